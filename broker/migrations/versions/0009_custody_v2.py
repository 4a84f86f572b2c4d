"""custody v2: the record format of each segment's record, and gap reports' signatures

Revision ID: 0009_custody_v2
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_custody_v2"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("segments", schema=None) as batch_op:
        # NULL for rows before v2: a signed one is then a v1 record
        batch_op.add_column(sa.Column("record_version", sa.Integer(), nullable=True))
    with op.batch_alter_table("recording_gaps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("signature", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("recording_gaps", schema=None) as batch_op:
        batch_op.drop_column("signature")
    with op.batch_alter_table("segments", schema=None) as batch_op:
        batch_op.drop_column("record_version")
