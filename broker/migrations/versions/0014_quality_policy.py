"""the recording policy's quality level (issue 19)

A named level (shared.wire.QualityLevel: high, standard, compact, storage-saving), NULL where
the tenant leaves it to each agent.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("device_policies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("quality", sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("device_policies", schema=None) as batch_op:
        batch_op.drop_column("quality")
