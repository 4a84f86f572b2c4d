"""device policy per tenant (pushed in the heartbeat reply), and pause gaps' time ranges

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_policies",
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("fps", sa.Float(), nullable=True),
        sa.Column("segment_seconds", sa.Float(), nullable=True),
        sa.Column("idle_seconds", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_device_policies_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_device_policies")),
    )
    with op.batch_alter_table("recording_gaps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gap_from", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("gap_to", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("recording_gaps", schema=None) as batch_op:
        batch_op.drop_column("gap_to")
        batch_op.drop_column("gap_from")
    op.drop_table("device_policies")
