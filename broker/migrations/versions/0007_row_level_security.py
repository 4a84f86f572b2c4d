"""row-level security on PostgreSQL: the second wall of tenant isolation

A transaction that declares its tenant (`broker.db.scope.TenantScope` sets
`bucketreel.tenant`, local to the transaction) sees and writes only that tenant's rows,
whatever its queries forget. Work that legitimately spans tenants (migrations, the operator's
commands, lookups made before the tenant is known) declares none and sees every row.
FORCE applies the policies to the tables' owner too, the role the broker connects as.

`tenants` is walled on its `id` (a declared transaction sees only its own tenant's row).
`login_failures` is not: it holds no tenant data, only HMACs counted before any tenant is
trusted.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

from broker.db import walls

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Every table with a `tenant_id` column (tests/broker/test_row_level_security.py checks it).
TENANT_TABLES = (
    "users",
    "mfa_challenges",
    "recovery_codes",
    "user_sessions",
    "user_refresh_tokens",
    "manager_assignments",
    "enrollment_codes",
    "devices",
    "device_refresh_tokens",
    "storage_configs",
    "storage_access",
    "recordings",
    "segments",
    "recording_gaps",
    "device_policies",
    "upload_grants",
    "audit_log",
)
# The tables walled, each with the column that names its tenant.
WALLED = {**{table: "tenant_id" for table in TENANT_TABLES}, "tenants": "id"}

def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in WALLED.items():
        for statement in walls.put_up(table, column):  # the statements as first written here
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in WALLED:
        for statement in walls.take_down(table):
            op.execute(statement)
