"""the customer's bucket: role option, self-check findings, access-revoked state

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("storage_configs", schema=None) as batch_op:
        batch_op.alter_column("access_key_id", existing_type=sa.String(length=128), nullable=True)
        batch_op.alter_column("secret_sealed", existing_type=sa.LargeBinary(), nullable=True)
        batch_op.alter_column("kek_version", existing_type=sa.String(length=8), nullable=True)
        batch_op.add_column(
            sa.Column("auth_mode", sa.String(length=8), nullable=False, server_default="keys")
        )
        batch_op.add_column(sa.Column("role_arn", sa.String(length=2048), nullable=True))

    op.create_table(
        "storage_access",
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("external_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("state_reason", sa.String(length=300), nullable=True),
        sa.Column("state_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("canary_key", sa.String(length=1024), nullable=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("check_result", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_storage_access_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_storage_access")),
    )


def downgrade() -> None:
    op.drop_table("storage_access")
    with op.batch_alter_table("storage_configs", schema=None) as batch_op:
        batch_op.drop_column("role_arn")
        batch_op.drop_column("auth_mode")
        batch_op.alter_column("kek_version", existing_type=sa.String(length=8), nullable=False)
        batch_op.alter_column("secret_sealed", existing_type=sa.LargeBinary(), nullable=False)
        batch_op.alter_column("access_key_id", existing_type=sa.String(length=128), nullable=False)
