"""chain of custody, device heartbeats and recording gaps

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("public_key", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("last_status", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("heartbeat_interval", sa.Integer(), nullable=True))
    with op.batch_alter_table("segments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("record_prev", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("record_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("record_signature", sa.String(length=100), nullable=True))
    op.create_table(
        "recording_gaps",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("recording_id", sa.String(length=36), nullable=False),
        sa.Column("seqs", sa.Text(), nullable=False),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["recording_id"], ["recordings.id"],
            name=op.f("fk_recording_gaps_recording_id_recordings"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_recording_gaps_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recording_gaps")),
    )
    with op.batch_alter_table("recording_gaps", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_recording_gaps_recording_id"), ["recording_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("recording_gaps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recording_gaps_recording_id"))
    op.drop_table("recording_gaps")
    with op.batch_alter_table("segments", schema=None) as batch_op:
        batch_op.drop_column("record_signature")
        batch_op.drop_column("record_hash")
        batch_op.drop_column("record_prev")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("heartbeat_interval")
        batch_op.drop_column("last_status")
        batch_op.drop_column("public_key")
