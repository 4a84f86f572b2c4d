"""reserved for issue 19 (a quality level per tenant)

Empty until that work fills it in; it only keeps the revision chain linear while the work
on several issues lands side by side.

Revision ID: 0014
Revises: 0013
"""

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
