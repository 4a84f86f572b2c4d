"""device caps (per tenant, per person) and the failed sign-ins a person is shown

`tenants.device_cap` and `users.device_cap`: how many devices that are not revoked a person
may have (the person's own cap, else the tenant's, else `BUCKETREEL_DEVICE_CAP`); null means
"not set here". `users.failed_logins` and `users.failed_login_at`: failed passwords for the
account since its last full sign-in, shown to the person at the next one
(`broker.auth.login`).

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("device_cap", sa.Integer(), nullable=True))
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("device_cap", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("failed_login_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+), never a batch rebuild: the broker's
    # SQLite enforces foreign keys, and rebuilding `users` would drop a table others reference.
    for table, column in (
        ("users", "failed_login_at"),
        ("users", "failed_logins"),
        ("users", "device_cap"),
        ("tenants", "device_cap"),
    ):
        op.drop_column(table, column)
