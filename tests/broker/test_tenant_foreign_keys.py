"""Foreign keys bound to the tenant (migration 0008): the database itself refuses a row that
names another tenant's row, on SQLite and on PostgreSQL, whatever the code above it does.

Row-level security (0007) cannot: foreign-key checks bypass it. So every foreign key from one
tenant-scoped table to another is `(tenant_id, x_id) REFERENCES parent (tenant_id, id)`.
The links are derived from `broker.db.schema`, so a new one is tested without being listed,
and fails here if it is a plain foreign key.

Every test runs on both databases (PostgreSQL through the broker's own non-superuser role,
which the wall applies to). Rows are made the way the broker makes them (its HTTP API and its
admin functions); only the rows the broker would never write are inserted directly. Nothing
here skips: a server that cannot start fails the test with what is missing.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import subprocess
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import (
    Connection,
    Table,
    UniqueConstraint,
    delete,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from broker import admin
from broker.db import migrate
from broker.db.database import Database
from broker.db.engine import create_engine
from broker.db.schema import metadata, recordings, segments, tenants, users
from broker.db.scope import TenantScope
from broker.errors import BrokerError
from broker.settings import generate_secrets
from tests.conftest import BROKER_DB_ROLE
from tests.identity.people import make_person, sign_in
from tests.support import migrations
from tests.support.api import (
    Api,
    Operator,
    enroll,
    make_tenant,
    random_segment,
    snapshot,
    start_recording,
)
from tests.support.broker import BrokerProcess, base_env, broker_script
from tests.support.s3 import S3Endpoint

T = TypeVar("T")
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True, order=True)
class Link:
    """A foreign key from tenant-scoped `table.column` to tenant-scoped `parent`."""

    table: str
    column: str
    parent: str

    def __str__(self) -> str:
        return f"{self.table}.{self.column}"


def tenant_scoped(table: Table) -> bool:
    return "tenant_id" in table.c


def links_of_schema() -> list[Link]:
    """Every foreign key between two tenant-scoped tables, composite or not (foreign keys to
    `tenants` itself are not links: `tenants` has no tenant column)."""
    found = []
    for table in metadata.sorted_tables:
        if not tenant_scoped(table):
            continue
        for fk in sorted(table.foreign_key_constraints, key=lambda c: str(c.name)):
            if tenant_scoped(fk.referred_table):
                own = [name for name in fk.column_keys if name != "tenant_id"] or ["tenant_id"]
                found.append(Link(table.name, ",".join(own), fk.referred_table.name))
    return found


LINKS = links_of_schema()
PARENTS = sorted({link.parent for link in LINKS})




def load_migration() -> ModuleType:
    return migrations.load_migration("0008_tenant_foreign_keys.py")


def on(url: str, use: Callable[[AsyncEngine], Awaitable[T]], *, app: bool = True) -> T:
    """Run `use` on an engine for `url`: the broker app's own (`Database`, which on SQLite
    begins each transaction IMMEDIATE) or, `app=False`, the plain one `bucketreel-broker
    migrate` uses (on SQLite the driver then opens transactions only before DML)."""

    async def go() -> T:
        engine = Database.from_url(url).engine if app else create_engine(url)
        try:
            return await use(engine)
        finally:
            await engine.dispose()

    return asyncio.run(go())


# --- the schema, without a database ---------------------------------------------------------


def test_every_link_between_tenant_tables_carries_the_tenant() -> None:
    assert len(LINKS) >= 14, LINKS  # the links of 0008; more is fine, fewer means lost ones
    plain = []
    for link in LINKS:
        fk = foreign_key(link)
        pairs = [(element.parent.name, element.column.name) for element in fk.elements]
        if pairs != [("tenant_id", "tenant_id"), (link.column, "id")]:
            plain.append(f"{link} -> {link.parent}: {pairs}")
        if fk.name != f"fk_{link.table}_{link.column}_{link.parent}":
            plain.append(f"{link}: named {fk.name}")
        if fk.ondelete is not None or fk.onupdate is not None:
            plain.append(f"{link}: ON DELETE/UPDATE changed")
    assert not plain, "not bound to the tenant (use schema.tenant_link): " + "; ".join(plain)
    for parent in PARENTS:
        keys = {
            tuple(c.name for c in constraint.columns)
            for constraint in metadata.tables[parent].constraints
            if isinstance(constraint, UniqueConstraint)
        }
        assert ("tenant_id", "id") in keys, f"{parent} lacks UNIQUE (tenant_id, id)"


def test_the_migration_binds_exactly_the_links_of_the_schema() -> None:
    """0008 binds the schema's links, parents first. (A link added later comes with a
    migration of its own that binds it; its list then joins 0008's here.)"""
    migration = load_migration()
    assert sorted(Link(*link) for link in migration.LINKS) == sorted(LINKS)
    assert sorted(migration.PARENTS) == PARENTS
    ordered = list(migration.TABLES)
    for link in LINKS:  # parents are altered (and refilled on SQLite) before their children
        assert ordered.index(link.parent) < ordered.index(link.table), link


def foreign_key(link: Link) -> Any:
    table = metadata.tables[link.table]
    matching = [
        fk for fk in table.foreign_key_constraints
        if fk.referred_table.name == link.parent and link.column in fk.column_keys
    ]
    assert len(matching) == 1, (link, matching)
    return matching[0]


# --- two tenants on the suite's broker -------------------------------------------------------


@dataclass(frozen=True)
class World:
    url: str
    a: str
    b: str
    parents: dict[str, dict[str, str]]  # tenant -> parent table -> a row of that tenant


def populate(api: Api, broker: BrokerProcess, s3: S3Endpoint) -> str:
    """A tenant with rows in every table a link touches, made as the broker makes them."""
    tenant = make_tenant(broker, s3)
    # users, mfa_challenges, recovery_codes, user_sessions, user_refresh_tokens
    manager = sign_in(api, make_person(broker, tenant, "manager"))
    employee = make_person(broker, tenant)
    Operator(broker).run(
        admin.assign, tenant=tenant.tenant_id, manager=manager.email, employee=employee.email
    )
    # enrollment_codes, devices, device_refresh_tokens
    device = enroll(api, broker, tenant, employee.user_id)
    recording_id = start_recording(api, device)
    path = f"/api/v1/recordings/{recording_id}"
    granted = api.call(  # segments, upload_grants
        "POST", path + "/segments/0/upload", random_segment(4096).declaration(),
        token=device.access_token,
    )
    assert granted.status == 200, granted.body
    gap = api.call(
        "POST", path + "/gaps", {"seqs": [1], "reason": "refused"}, token=device.access_token
    )
    assert gap.status in (200, 201), gap.body
    return tenant.tenant_id


async def parent_rows(conn: AsyncConnection, tenant: str) -> dict[str, str]:
    """A row of each parent table in `tenant`."""
    found = {}
    for name in PARENTS:
        table = metadata.tables[name]
        row = (await conn.execute(
            select(table.c.id).where(table.c.tenant_id == tenant).limit(1)
        )).first()
        if row is None:
            pytest.fail(f"the set-up made no row of {name}: extend populate()")
        found[name] = str(row.id)
    return found


async def parents_of(engine: AsyncEngine, tenant: str) -> dict[str, str]:
    async with engine.connect() as conn:
        return await parent_rows(conn, tenant)


async def the_broker_role_is_walled(engine: AsyncEngine) -> None:
    """On PostgreSQL, the tests' connection is the broker's: its role, subject to the wall."""
    if engine.dialect.name != "postgresql":
        return
    async with engine.connect() as conn:
        user = (await conn.execute(text("SELECT current_user"))).scalar_one()
    assert user == BROKER_DB_ROLE
    assert await Database(engine).bypasses_row_security() is None


@pytest.fixture(scope="module")
def world(broker: BrokerProcess, s3_endpoint: S3Endpoint, api: Api) -> World:
    a, b = populate(api, broker, s3_endpoint), populate(api, broker, s3_endpoint)

    async def read(engine: AsyncEngine) -> dict[str, dict[str, str]]:
        await the_broker_role_is_walled(engine)
        return {tenant: await parents_of(engine, tenant) for tenant in (a, b)}

    return World(broker.database_url, a, b, on(broker.database_url, read))


def fresh(column: Any) -> Any:
    """A new value for a required column, by its Python type (a TypeDecorator's, its impl's)."""
    kind = getattr(column.type, "impl", column.type).python_type
    if kind is str:
        return secrets.token_hex(16)[: min(getattr(column.type, "length", None) or 32, 32)]
    if kind is int:
        return secrets.randbelow(10**9) + 10**6
    if kind is float:
        return 1.0
    if kind is datetime:
        return NOW
    if kind is bytes:
        return b"\x00"
    raise AssertionError(f"no value for {column} of {kind}: extend fresh()")


def a_row(link: Link, parents: Mapping[str, str], target: str) -> dict[str, Any]:
    """A new row of `link.table` (its tenant added by `TenantScope`): every link of it names
    the row's own tenant's `parents`, except `link`, which names `target`."""
    values: dict[str, Any] = {}
    own = {other.column: other for other in LINKS if other.table == link.table}
    for column in metadata.tables[link.table].columns:
        if column.name == "tenant_id":
            continue
        if column.name in own:
            values[column.name] = target if own[column.name] == link else parents[
                own[column.name].parent
            ]
        elif column.primary_key or not (column.nullable or column.server_default is not None):
            # (a column with a server default may be newer than the database at hand)
            values[column.name] = fresh(column)
    return values


async def insert_as(engine: AsyncEngine, tenant: str, link: Link, target: str) -> None:
    """Insert a row of `link.table` in `tenant` whose `link` names `target`, through the
    broker's own data-access layer in the tenant's declared transaction (on PostgreSQL the
    wall is up), then roll back: the shared database stays as it was."""
    table = metadata.tables[link.table]
    async with engine.connect() as conn:
        await conn.begin()
        try:
            parents = await parent_rows(conn, tenant)
            scope = TenantScope(conn, tenant)
            await scope.insert(table, **a_row(link, parents, target))
            assert await scope.count(table, table.c[link.column] == target) >= 1
        finally:
            await conn.rollback()


@pytest.mark.parametrize("link", LINKS, ids=str)
def test_a_row_can_name_a_row_of_its_own_tenant(world: World, link: Link) -> None:
    own_parent = world.parents[world.a][link.parent]
    on(world.url, lambda engine: insert_as(engine, world.a, link, own_parent))


@pytest.mark.parametrize("link", LINKS, ids=str)
def test_a_row_cannot_name_another_tenants_row(world: World, link: Link) -> None:
    their_parent = world.parents[world.b][link.parent]
    with pytest.raises(IntegrityError) as refused:
        on(world.url, lambda engine: insert_as(engine, world.a, link, their_parent))
    if make_url(world.url).get_backend_name() == "postgresql":  # SQLite names no constraint
        assert f'"fk_{link.table}_{link.column}_{link.parent}"' in str(refused.value.orig)


def schema_differences(conn: Connection) -> list[Any]:
    """What Alembic's autogenerate would change to make the database match the schema, plus
    foreign keys and unique constraints whose names or columns differ (autogenerate compares
    foreign keys by their columns only)."""
    found: list[Any] = list(compare_metadata(MigrationContext.configure(conn), metadata))
    inspector = inspect(conn)
    for table in metadata.sorted_tables:
        declared_fks = {
            (str(fk.name), tuple(fk.column_keys), fk.referred_table.name,
             tuple(element.column.name for element in fk.elements))
            for fk in table.foreign_key_constraints
        }
        reflected_fks = {
            (fk["name"], tuple(fk["constrained_columns"]), fk["referred_table"],
             tuple(fk["referred_columns"]))
            for fk in inspector.get_foreign_keys(table.name)
        }
        if declared_fks != reflected_fks:
            found.append(("foreign keys", table.name, declared_fks ^ reflected_fks))
        declared_uqs = {
            (str(c.name), tuple(column.name for column in c.columns))
            for c in table.constraints if isinstance(c, UniqueConstraint)
        }
        reflected_uqs = {
            (uq["name"], tuple(uq["column_names"]))
            for uq in inspector.get_unique_constraints(table.name)
        }
        if declared_uqs != reflected_uqs:
            found.append(("unique constraints", table.name, declared_uqs ^ reflected_uqs))
    return found


async def differences(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        return await conn.run_sync(schema_differences)


def test_the_schema_is_what_the_migrations_make(world: World) -> None:
    assert on(world.url, differences) == []


# --- the migration itself, on a database of its own -------------------------------------------


def alembic(verb: str, revision: str) -> Callable[[AsyncEngine], Awaitable[None]]:
    async def run(engine: AsyncEngine) -> None:
        async with engine.begin() as conn:
            await conn.run_sync(
                lambda sync: getattr(command, verb)(migrate.alembic_config(sync), revision)
            )

    return run


async def catalog(engine: AsyncEngine) -> list[Any]:
    """What must come back as it was: on PostgreSQL the walls of 0007 (a table rebuilt would
    lose them), on SQLite every table's and index's definition."""
    async with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            sql = (
                "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, p.policyname,"
                " p.qual, p.with_check FROM pg_class c"
                " LEFT JOIN pg_policies p ON p.tablename = c.relname"
                " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'"
                " ORDER BY c.relname"
            )
        else:
            sql = "SELECT type, name, sql FROM sqlite_master ORDER BY type, name"
            rows = (await conn.execute(text(sql))).all()
            return [(kind, name, definition(sql)) for kind, name, sql in rows]
        return [tuple(row) for row in (await conn.execute(text(sql))).all()]


def definition(sql: str | None) -> tuple[str, ...]:
    """A table's or index's SQL, its constraints sorted: batch mode lists them in no set
    order, and their order means nothing (the columns' order is kept as it is)."""
    lines = [line.strip().rstrip(",") for line in (sql or "").split("\n")]
    constraints = sorted(line for line in lines if line.startswith("CONSTRAINT"))
    return (*(line for line in lines if not line.startswith("CONSTRAINT")), *constraints)


async def tenants_per_table(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        return {
            name: int((await conn.execute(
                select(func.count(metadata.tables[name].c.tenant_id.distinct()))
            )).scalar_one())
            for name in load_migration().TABLES
        }


def test_the_migration_keeps_every_row_both_ways(
    empty_database: str, s3_endpoint: S3Endpoint, session_tmp: Path
) -> None:
    url = empty_database
    with BrokerProcess(url, log_dir=session_tmp / "logs") as broker:  # migrated to head
        api = Api(broker.url)
        a, b = populate(api, broker, s3_endpoint), populate(api, broker, s3_endpoint)
    assert on(url, tenants_per_table) == dict.fromkeys(load_migration().TABLES, 2), (
        "every table 0008 alters holds rows of both tenants, so the rows really move"
    )
    on(url, alembic("downgrade", "0008"))  # 0008 both ways: later migrations' columns aside
    rows, walls = snapshot(url), on(url, catalog)

    theirs = on(url, lambda engine: parents_of(engine, b))
    for app in (False, True):  # the CLI's plain engine, then the app's own
        on(url, alembic("downgrade", "0007"), app=app)
        assert on(url, migrate.current_revision) == "0007"
        assert snapshot(url) == rows
        for link in LINKS:  # the old plain keys took a reference to another tenant's row
            on(url, partial(insert_as, tenant=a, link=link, target=theirs[link.parent]))

        on(url, alembic("upgrade", "0008"), app=app)
        assert on(url, migrate.current_revision) == "0008"
        assert snapshot(url) == rows
        assert on(url, catalog) == walls
        with pytest.raises(IntegrityError):
            on(url, lambda engine: insert_as(engine, a, LINKS[0], theirs[LINKS[0].parent]))
    on(url, migrate.upgrade)
    assert on(url, migrate.current_revision) == migrations.head_revision()
    assert on(url, differences) == [], "and on to the newest schema"


async def seed(engine: AsyncEngine, name: str) -> tuple[str, str]:
    """A tenant, a user and a recording, written directly (undeclared, as the CLI writes)."""
    tenant_id, user_id, recording_id = (str(uuid.uuid4()) for _ in range(3))
    async with engine.begin() as conn:
        await conn.execute(insert(tenants).values(id=tenant_id, name=name, created_at=NOW))
        await conn.execute(insert(users).values(
            id=user_id, tenant_id=tenant_id, email=f"u@{name}.example", role="employee",
            password_hash="x", session_version=1, created_at=NOW,
        ))
        await conn.execute(insert(recordings).values(
            id=recording_id, tenant_id=tenant_id, user_id=user_id, state="recording",
            started_at=NOW, created_at=NOW,
        ))
    return tenant_id, recording_id


def segment_row(tenant_id: str, recording_id: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()), "tenant_id": tenant_id, "recording_id": recording_id,
        "seq": 0, "object_key": "k", "state": "pending", "size": 1, "sha256": "s", "md5": "m",
        "started_at": NOW, "duration_ms": 1, "created_at": NOW,
    }


def test_the_migration_stops_at_a_reference_to_another_tenant(empty_database: str) -> None:
    """A row 0007 let through (it never did in practice) stops the migration, named; the
    database stays at 0007, unchanged, until the row is dealt with."""
    url = empty_database
    bad = str(uuid.uuid4())

    async def prepare(engine: AsyncEngine) -> None:
        await alembic("upgrade", "0007")(engine)
        a, _ = await seed(engine, "tenant-a")
        _, b_recording = await seed(engine, "tenant-b")
        async with engine.begin() as conn:
            await conn.execute(insert(segments).values(segment_row(a, b_recording) | {"id": bad}))

    on(url, prepare)
    before, schema_before = snapshot(url), on(url, catalog)
    with pytest.raises(
        migrate.MigrationRefused,
        match=r"1 row\(s\) of segments whose recording_id names another tenant's",
    ):
        on(url, migrate.upgrade)
    assert on(url, migrate.current_revision) == "0007"
    assert snapshot(url) == before
    assert on(url, catalog) == schema_before
    cli = subprocess.run(  # the operator's view: one clear line, exit 1, no traceback
        [str(broker_script()), "migrate"], capture_output=True, text=True, check=False,
        env={**base_env(), **generate_secrets(), "BUCKETREEL_DATABASE_URL": url},
        stdin=subprocess.DEVNULL, timeout=120,
    )
    assert cli.returncode == 1, cli.stderr
    assert "cannot bind foreign keys to the tenant: 1 row(s) of segments" in cli.stderr
    assert "Traceback" not in cli.stderr
    assert on(url, migrate.current_revision) == "0007"

    async def fix_and_migrate(engine: AsyncEngine) -> str | None:
        async with engine.begin() as conn:
            await conn.execute(delete(segments).where(segments.c.id == bad))
        await migrate.upgrade(engine)
        return await migrate.current_revision(engine)

    assert on(url, fix_and_migrate) == migrations.head_revision()


@pytest.mark.parametrize("app", [False, True], ids=["cli-engine", "app-engine"])
def test_a_rebuild_that_fails_on_sqlite_changes_nothing(tmp_path: Path, app: bool) -> None:
    """SQLite rebuilds tables to change their keys: if a row cannot go back (here a segment
    whose recording does not exist, written with foreign keys off, which the tenant check
    cannot see), every table is as it was, with every row, still at 0007. Both engines:
    the CLI's leaves transactions to the driver, the app's begins them IMMEDIATE."""
    path = tmp_path / "broker.db"
    url = f"sqlite+aiosqlite:///{path}"

    async def prepare(engine: AsyncEngine) -> None:
        await alembic("upgrade", "0007")(engine)
        for name in ("tenant-a", "tenant-b"):
            tenant_id, recording_id = await seed(engine, name)
            async with engine.begin() as conn:
                await conn.execute(insert(segments).values(segment_row(tenant_id, recording_id)))

    on(url, prepare)
    raw = sqlite3.connect(path)  # foreign keys off: SQLite's default for a new connection
    with raw:
        raw.execute(
            "INSERT INTO segments SELECT ?, tenant_id, 'no-such-recording', seq, object_key,"
            " state, size, sha256, md5, started_at, duration_ms, created_at, verified_at,"
            " record_prev, record_hash, record_signature FROM segments LIMIT 1",
            (str(uuid.uuid4()),),
        )
    raw.close()
    before, schema_before = snapshot(url), on(url, catalog)

    with pytest.raises(BrokerError, match="FOREIGN KEY constraint failed"):
        on(url, migrate.upgrade, app=app)

    assert on(url, migrate.current_revision) == "0007"
    assert snapshot(url) == before
    assert on(url, catalog) == schema_before
