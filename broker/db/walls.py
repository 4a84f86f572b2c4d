"""Row-level security statements (PostgreSQL) for a tenant table: the wall of migration 0007,
for the migrations that add tenant tables later to put up alike.

A transaction that declares its tenant (`bucketreel.tenant`, set by `TenantScope`) sees and
writes only that tenant's rows; one that declares none (migrations, operator commands,
cross-tenant sweeps) sees every row. FORCE applies it to the tables' owner too.
"""

from __future__ import annotations

_DECLARED = "current_setting('bucketreel.tenant', true)"


def wall(column: str) -> str:
    return f"{_DECLARED} IS NULL OR {_DECLARED} = '' OR {column} = {_DECLARED}"


def put_up(table: str, column: str) -> list[str]:
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        f"CREATE POLICY tenant_wall ON {table} FOR ALL"
        f" USING ({wall(column)}) WITH CHECK ({wall(column)})",
    ]


def take_down(table: str) -> list[str]:
    return [
        f"DROP POLICY tenant_wall ON {table}",
        f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY",
    ]
