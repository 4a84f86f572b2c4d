"""tenant-bound foreign keys: a row can reference only rows of its own tenant

Row-level security (0007) hides other tenants' rows from a declared transaction, but
foreign-key checks bypass it (PostgreSQL runs them with row security off, as it must), and
SQLite has no wall at all. Until now a segment of tenant A could name a recording of tenant B
and the database accepted it; only application code (`TenantScope` finding the parent in its
own tenant first) stood in the way. Now every foreign key from one tenant-scoped table to
another carries the tenant:

    (tenant_id, recording_id) REFERENCES recordings (tenant_id, id)

backed by UNIQUE (tenant_id, id) on each referenced table (`id` alone is unique already; a
composite foreign key needs the pair declared unique to point at). A child row must then share
its parent's tenant, on both databases, whatever a query does. Foreign keys to `tenants`
itself stay as they are, and so does ON DELETE (the default, NO ACTION: nothing cascades).
Each foreign key keeps its name, which still says what it links.

Before anything changes, the migration counts existing cross-tenant references and stops,
naming them, if there are any (the application never wrote one; this says so or says where).

PostgreSQL: plain ALTER TABLEs in the migration's transaction; tables, rows and the 0007
policies stay. `broker.db.migrate` runs undeclared (no `bucketreel.tenant`), so the check above
sees every tenant's rows, and validating the new keys bypasses row security anyway.

SQLite cannot alter a constraint: batch mode rebuilds the table (create a copy, fill it, drop
the old one, rename). The broker enforces foreign keys (PRAGMA foreign_keys=ON, which cannot
be turned off inside the migration's transaction), and dropping a table whose rows other rows
reference fails. So the rows of every rebuilt table are first set aside in temporary tables
and the tables emptied, children first; the empty tables are rebuilt; the rows go back parents
first, each one checked against the new keys on its way in. All of it inside one savepoint:
whatever transaction mode the driver is in, the rebuild happens entirely or not at all.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

from broker.db.migrate import MigrationRefused

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# The tables other tenant-scoped tables point at, each before any table that points at it.
PARENTS = ("users", "user_sessions", "devices", "recordings", "segments")

# Every foreign key from a tenant-scoped table to another one: (table, column, parent).
# tests/broker/test_tenant_foreign_keys.py derives the same list from broker.db.schema.
LINKS = (
    ("mfa_challenges", "user_id", "users"),
    ("recovery_codes", "user_id", "users"),
    ("user_sessions", "user_id", "users"),
    ("user_refresh_tokens", "session_id", "user_sessions"),
    ("manager_assignments", "manager_id", "users"),
    ("manager_assignments", "employee_id", "users"),
    ("enrollment_codes", "user_id", "users"),
    ("devices", "user_id", "users"),
    ("device_refresh_tokens", "device_id", "devices"),
    ("recordings", "user_id", "users"),
    ("recordings", "device_id", "devices"),
    ("segments", "recording_id", "recordings"),
    ("recording_gaps", "recording_id", "recordings"),
    ("upload_grants", "segment_id", "segments"),
)

# Every table this migration alters, parents before the tables that point at them.
TABLES = tuple(dict.fromkeys((*PARENTS, *(table for table, _, _ in LINKS))))

_SAVEPOINT = "migration_0008"


def fk_name(table: str, column: str, parent: str) -> str:
    return f"fk_{table}_{column}_{parent}"


def uq_name(parent: str) -> str:
    return f"uq_{parent}_tenant_id"


def upgrade() -> None:
    _refuse_cross_tenant_rows()
    with _rows_set_aside():
        for table in TABLES:
            with op.batch_alter_table(table, schema=None) as batch_op:
                if table in PARENTS:
                    batch_op.create_unique_constraint(uq_name(table), ["tenant_id", "id"])
                for column, parent in _links_of(table):
                    name = fk_name(table, column, parent)
                    batch_op.drop_constraint(name, type_="foreignkey")
                    batch_op.create_foreign_key(
                        name, parent, ["tenant_id", column], ["tenant_id", "id"]
                    )


def downgrade() -> None:
    with _rows_set_aside():
        # Children first: PostgreSQL will not drop a unique constraint a foreign key uses.
        for table in reversed(TABLES):
            with op.batch_alter_table(table, schema=None) as batch_op:
                for column, parent in _links_of(table):
                    name = fk_name(table, column, parent)
                    batch_op.drop_constraint(name, type_="foreignkey")
                    batch_op.create_foreign_key(name, parent, [column], ["id"])
                if table in PARENTS:
                    batch_op.drop_constraint(uq_name(table), type_="unique")


def _links_of(table: str) -> list[tuple[str, str]]:
    return [(column, parent) for child, column, parent in LINKS if child == table]


def _refuse_cross_tenant_rows() -> None:
    """Stop, saying where, if a row already references another tenant's row: the new keys
    would refuse it, and which row is right is for a person to decide, not a migration."""
    bind = op.get_bind()
    found = []
    for table, column, parent in LINKS:
        count = bind.execute(sa.text(
            f"SELECT count(*) FROM {table} AS child JOIN {parent} AS parent"  # noqa: S608
            f" ON parent.id = child.{column} WHERE parent.tenant_id <> child.tenant_id"
        )).scalar_one()
        if count:
            found.append(f"{count} row(s) of {table} whose {column} names another tenant's {parent}")
    if found:
        raise MigrationRefused(
            "cannot bind foreign keys to the tenant: " + "; ".join(found)
            + ". Correct or delete those rows, then migrate again."
        )


@contextmanager
def _rows_set_aside() -> Iterator[None]:
    """On SQLite, empty the altered tables (children first) into temporary ones for the
    block, and put the rows back afterwards (parents first): batch mode can then drop and
    rebuild each table although foreign keys are enforced. A no-op on PostgreSQL, which
    alters the tables in place."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        yield
        return
    op.execute(f"SAVEPOINT {_SAVEPOINT}")
    columns = {}
    for table in reversed(TABLES):
        columns[table] = ", ".join(f'"{c["name"]}"' for c in sa.inspect(bind).get_columns(table))
        op.execute(f"CREATE TEMP TABLE {_aside(table)} AS SELECT * FROM {table}")  # noqa: S608
        op.execute(f"DELETE FROM {table}")  # noqa: S608
    yield
    for table in TABLES:
        op.execute(
            f"INSERT INTO {table} ({columns[table]})"  # noqa: S608
            f" SELECT {columns[table]} FROM temp.{_aside(table)}"
        )
        op.execute(f"DROP TABLE temp.{_aside(table)}")
    op.execute(f"RELEASE {_SAVEPOINT}")


def _aside(table: str) -> str:
    return f"aside_0008_{table}"
