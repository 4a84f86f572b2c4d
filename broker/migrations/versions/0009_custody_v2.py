"""custody v2: the record format of each segment's record, and gap reports' signatures

Plain ALTER TABLE on both databases (SQLite adds and, since 3.35, drops a column in place),
never a batch rebuild: the broker's SQLite enforces foreign keys, and rebuilding `segments`
would drop a table other rows reference.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL for rows before v2: a signed one is then a v1 record
    op.add_column("segments", sa.Column("record_version", sa.Integer(), nullable=True))
    op.add_column("recording_gaps", sa.Column("signature", sa.String(length=100), nullable=True))


def downgrade() -> None:
    op.drop_column("recording_gaps", "signature")
    op.drop_column("segments", "record_version")
