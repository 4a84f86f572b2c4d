"""reserved for issue 14 (the device path at 512 requests a second)

Empty until that work fills it in; it only keeps the revision chain linear while the work
on several issues lands side by side.

Revision ID: 0016
Revises: 0015
"""

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
