"""reserved for issue 18 (the self-describing bucket)

Empty until that work fills it in; it only keeps the revision chain linear while the work
on several issues lands side by side.

Revision ID: 0015
Revises: 0014
"""

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
