"""reserved for issue 14 (replicas and revocation across processes)

Empty until that work fills it in; it only keeps the revision chain linear while the work
on several issues lands side by side.

Revision ID: 0017
Revises: 0016
"""

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
