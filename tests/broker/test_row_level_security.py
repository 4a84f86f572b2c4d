"""PostgreSQL row-level security: the second wall behind `TenantScope` (migration 0007).

These tests need PostgreSQL and take its URL directly: when it cannot start they fail (the
`postgres_server` fixture says what is missing), they never skip. Their database is owned by
the role the broker connects as in the suite (`BROKER_DB_ROLE`), so FORCE matters.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest
from alembic import command
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from broker.db import migrate
from broker.db.database import Database
from broker.db.engine import create_engine
from broker.db.schema import devices, metadata, recordings, tenants, users
from broker.db.scope import TenantConflict, TenantScope
from broker.devices import heartbeat
from tests.conftest import BROKER_DB_ROLE
from tests.support import migrations
from tests.support.broker import BrokerProcess
from tests.support.postgres import PostgresServer

T = TypeVar("T")
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def load_migration() -> ModuleType:
    return migrations.load_migration("0007_row_level_security.py")


# Later migrations that add tenant tables wall them alike and name them in their own `WALLED`.
LATER_WALLS = ("0015_bucket_records.py",)


def walled_tables() -> dict[str, str]:
    """Every walled table and its tenant column: 0007's and those later migrations add."""
    found = dict(load_migration().WALLED)
    for filename in LATER_WALLS:
        found.update(migrations.load_migration(filename).WALLED)
    return found


def new_database(server: PostgresServer) -> str:
    return server.create_database(f"rls_{secrets.token_hex(4)}", owner=BROKER_DB_ROLE)


def on(url: str, use: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    async def go() -> T:
        engine = create_engine(url)
        try:
            return await use(engine)
        finally:
            await engine.dispose()

    return asyncio.run(go())


async def seed(conn: AsyncConnection, name: str) -> str:
    """A tenant with two users and one recording each (written undeclared, as the CLI does)."""
    tenant_id = str(uuid.uuid4())
    await conn.execute(insert(tenants).values(id=tenant_id, name=name, created_at=NOW))
    for n in range(2):
        user_id = str(uuid.uuid4())
        await conn.execute(insert(users).values(
            id=user_id, tenant_id=tenant_id, email=f"u{n}@{name}.example", role="employee",
            password_hash="x", session_version=1, created_at=NOW,
        ))
        await conn.execute(insert(recordings).values(
            id=str(uuid.uuid4()), tenant_id=tenant_id, user_id=user_id, state="open",
            started_at=NOW, created_at=NOW,
        ))
    return tenant_id


class Tenants:
    def __init__(self, url: str, a: str, b: str) -> None:
        self.url, self.a, self.b = url, a, b


@pytest.fixture(scope="module")
def two(postgres_server: PostgresServer) -> Tenants:
    """A migrated database owned by the broker's role, with tenants A and B."""
    url = new_database(postgres_server)

    async def setup(engine: AsyncEngine) -> tuple[str, str]:
        await migrate.upgrade(engine)
        async with engine.begin() as conn:
            return await seed(conn, "tenant-a"), await seed(conn, "tenant-b")

    a, b = on(url, setup)
    return Tenants(url, a, b)


def tenant_ids(rows: list[Any]) -> set[str]:
    return {row.tenant_id for row in rows}


def test_a_query_that_forgets_the_tenant_sees_only_the_declared_one(two: Tenants) -> None:
    async def use(engine: AsyncEngine) -> None:
        async with engine.begin() as conn:  # undeclared: spans tenants (admin, migrations)
            assert tenant_ids(list((await conn.execute(select(users))).all())) == {two.a, two.b}
        async with engine.begin() as conn:
            scope = TenantScope(conn, two.a)
            assert await scope.count(users) == 2
            for table in (users, recordings):
                rows = list((await conn.execute(select(table))).all())  # no tenant filter
                assert len(rows) == 2, table.name
                assert tenant_ids(rows) == {two.a}, table.name
            assert list((await scope.execute(select(recordings.c.tenant_id))).scalars()) == [
                two.a, two.a,
            ]
            assert (await conn.execute(select(tenants.c.id))).scalars().all() == [two.a]

    on(two.url, use)


def test_writes_to_another_tenant_are_refused(two: Tenants) -> None:
    async def use(engine: AsyncEngine) -> None:
        async with engine.connect() as conn:
            await conn.begin()
            scope = TenantScope(conn, two.a)
            await scope.count(users)
            # B's rows are invisible: an update or delete that forgets the tenant misses them.
            changed = await conn.execute(update(users).values(role="admin"))
            assert changed.rowcount == 2
            hit = await conn.execute(update(users).where(users.c.tenant_id == two.b)
                                     .values(role="admin"))
            assert hit.rowcount == 0
            gone = await conn.execute(delete(recordings).where(recordings.c.tenant_id == two.b))
            assert gone.rowcount == 0
            await conn.rollback()

            await conn.begin()
            await TenantScope(conn, two.a).count(users)
            with pytest.raises(DBAPIError, match="row-level security"):
                await conn.execute(insert(users).values(
                    id=str(uuid.uuid4()), tenant_id=two.b, email="new@b.example",
                    role="admin", password_hash="x", session_version=1, created_at=NOW,
                ))
            await conn.rollback()

            await conn.begin()
            await TenantScope(conn, two.a).count(users)
            with pytest.raises(DBAPIError, match="row-level security"):  # moving A's row to B
                await conn.execute(update(recordings).values(tenant_id=two.b))
            await conn.rollback()

        async with engine.begin() as conn:
            rows = (await conn.execute(select(users.c.tenant_id, users.c.role))).all()
            assert sorted(rows) == sorted([(two.a, "employee")] * 2 + [(two.b, "employee")] * 2)

    on(two.url, use)


def test_the_declaration_lasts_one_transaction_and_one_tenant(two: Tenants) -> None:
    async def use(engine: AsyncEngine) -> None:
        async with engine.connect() as conn:
            await conn.begin()
            scope = TenantScope(conn, two.a)
            await scope.count(users)
            await TenantScope(conn, two.a).count(users)  # the same tenant again is fine
            with pytest.raises(TenantConflict):
                await TenantScope(conn, two.b).count(users)
            await conn.rollback()

            # the same connection, next transaction: nothing declared any more
            await conn.begin()
            assert len((await conn.execute(select(users))).all()) == 4
            await conn.rollback()

            # the scope declares itself again in a new transaction
            await conn.begin()
            assert await scope.count(users) == 2
            assert len((await conn.execute(select(users))).all()) == 2
            await conn.rollback()

            # a savepoint rolled back takes its declaration with it; the scope makes it again
            await conn.begin()
            savepoint = await conn.begin_nested()
            await scope.count(users)
            await savepoint.rollback()
            assert await scope.count(users) == 2
            assert len((await conn.execute(select(users))).all()) == 2
            await conn.rollback()

    on(two.url, use)


def test_a_tenant_declared_with_the_begin_holds_like_a_scope(two: Tenants) -> None:
    """`Database.transaction(tenant=…)` declares the tenant with its BEGIN (one round trip):
    the wall holds for a query that forgets the filter, writes, and savepoints; another
    tenant's scope is refused; the connection's next transaction declares nothing."""

    async def use(engine: AsyncEngine) -> None:
        db = Database(engine)
        async with db.transaction(tenant=two.a) as conn:
            assert (await conn.execute(text(
                "SELECT current_setting('bucketreel.tenant', true)"
            ))).scalar_one() == two.a
            rows = list((await conn.execute(select(users))).all())  # no filter, no scope
            assert tenant_ids(rows) == {two.a}
            assert await TenantScope(conn, two.a).count(users) == 2
            with pytest.raises(TenantConflict):
                await TenantScope(conn, two.b).count(users)
            savepoint = await conn.begin_nested()
            await conn.execute(select(users))
            await savepoint.rollback()
            assert tenant_ids(list((await conn.execute(select(users))).all())) == {two.a}
        with pytest.raises(DBAPIError, match="row-level security"):
            async with db.transaction(tenant=two.a) as conn:
                await conn.execute(update(recordings).values(tenant_id=two.b))
        async with db.transaction() as conn:  # the same connection, undeclared: every row
            assert tenant_ids(list((await conn.execute(select(users))).all())) == {two.a, two.b}
        async with db.read(tenant=two.b) as conn:
            assert tenant_ids(list((await conn.execute(select(users))).all())) == {two.b}

    on(two.url, use)


def test_the_heartbeat_call_declares_its_tenant_for_itself_alone(two: Tenants) -> None:
    """Migration 0017's `bucketreel_heartbeat`, run as a transaction of its own
    (`Database.call`): it writes its own tenant's device row only, its declaration ends with
    it (the pooled connection's next transaction sees every tenant), and inside a
    transaction declared for another tenant it is refused."""

    async def use(engine: AsyncEngine) -> None:
        db = Database(engine)
        async with engine.begin() as conn:  # undeclared, as enrollment by the CLI
            owners = {
                tenant: (await conn.execute(
                    select(users.c.id).where(users.c.tenant_id == tenant).limit(1)
                )).scalar_one()
                for tenant in (two.a, two.b)
            }
            ids = {tenant: str(uuid.uuid4()) for tenant in (two.a, two.b)}
            for tenant, device in ids.items():
                await conn.execute(insert(devices).values(
                    id=device, tenant_id=tenant, user_id=owners[tenant], name="beat",
                    created_at=NOW,
                ))

        def beat(tenant: str, device: str, owner: str) -> dict[str, Any]:
            return {"tenant": tenant, "device": device, "user": owner, "seen": NOW,
                    "status": '{"state":"recording"}', "every": 60}

        mine = await db.call(heartbeat._BEAT_CALL, beat(two.a, ids[two.a], owners[two.a]))
        assert mine is not None
        assert mine.policy_fps is None  # no policy set: NULL keys
        # another tenant's device, named with this tenant: no row, no write
        other = beat(two.a, ids[two.b], owners[two.b])
        assert await db.call(heartbeat._BEAT_CALL, other) is None
        async with db.transaction() as conn:  # undeclared again: every tenant's rows
            rows = (await conn.execute(
                select(devices.c.tenant_id, devices.c.heartbeat_interval)
                .where(devices.c.id.in_(list(ids.values())))
            )).all()
            assert sorted(rows) == sorted([(two.a, 60), (two.b, None)])
        with pytest.raises(DBAPIError, match="declared for another tenant"):
            async with db.transaction(tenant=two.b) as conn:
                await conn.execute(heartbeat._BEAT_CALL, beat(two.a, ids[two.a], owners[two.a]))

    on(two.url, use)


def test_the_broker_role_is_subject_to_the_wall(two: Tenants) -> None:
    """Not a superuser, no BYPASSRLS, and the owner of walled tables (hence FORCE)."""
    walled = walled_tables()

    async def use(engine: AsyncEngine) -> None:
        async with engine.begin() as conn:
            role = (await conn.execute(text(
                "SELECT rolname, rolsuper, rolbypassrls FROM pg_roles"
                " WHERE rolname = current_user"
            ))).one()
            assert tuple(role) == (BROKER_DB_ROLE, False, False)
            tables = (await conn.execute(text(
                "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,"
                " pg_get_userbyid(c.relowner) = current_user AS owned"
                " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'public' AND c.relkind = 'r'"
            ))).all()
            secured = {t.relname for t in tables if t.relrowsecurity and t.relforcerowsecurity}
            assert secured == set(walled)
            assert all(t.owned for t in tables)
            policies = (await conn.execute(text(
                "SELECT tablename, cmd FROM pg_policies WHERE policyname = 'tenant_wall'"
            ))).all()
            assert sorted(policies) == sorted((table, "ALL") for table in walled)

    on(two.url, use)


def test_every_table_with_a_tenant_column_is_walled() -> None:
    """A table added later with `tenant_id` must be added to migration 0007's list (or to a
    later migration that walls it)."""
    migration = load_migration()
    with_tenant = {name for name, table in metadata.tables.items() if "tenant_id" in table.c}
    later = set(walled_tables()) - set(migration.WALLED)
    assert set(migration.TENANT_TABLES) | later == with_tenant
    assert len(migration.TENANT_TABLES) + len(later) == len(with_tenant)
    unwalled = set(metadata.tables) - set(walled_tables())
    assert unwalled == {"login_failures"}  # HMACs counted before any tenant is trusted


def test_downgrade_removes_the_wall(postgres_server: PostgresServer) -> None:
    url = new_database(postgres_server)

    async def count(conn: AsyncConnection, sql: str) -> int:
        return int((await conn.execute(text(sql))).scalar_one())

    def alembic(conn: AsyncConnection, verb: str, revision: str) -> Awaitable[None]:
        do = getattr(command, verb)
        return conn.run_sync(lambda sync: do(migrate.alembic_config(sync), revision))

    async def use(engine: AsyncEngine) -> None:
        await migrate.upgrade(engine)
        async with engine.begin() as conn:
            await alembic(conn, "downgrade", "0006")
            assert await count(conn, "SELECT count(*) FROM pg_policies") == 0
            assert await count(
                conn, "SELECT count(*) FROM pg_class WHERE relrowsecurity OR relforcerowsecurity"
            ) == 0
            await alembic(conn, "upgrade", "head")
            walled = len(walled_tables())
            assert await count(conn, "SELECT count(*) FROM pg_policies") == walled

    on(url, use)


def test_the_migration_is_a_no_op_on_sqlite(tmp_path: Path) -> None:
    async def use(engine: AsyncEngine) -> None:
        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == migrations.head_revision()
        async with engine.begin() as conn:
            tenant = await seed(conn, "solo")
            assert await TenantScope(conn, tenant).count(users) == 2

    on(f"sqlite+aiosqlite:///{tmp_path / 'broker.db'}", use)


def test_the_broker_warns_when_its_role_skips_the_wall(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    url = new_database(postgres_server)
    as_superuser = postgres_server.url(url.rsplit("/", 1)[1])  # the same database
    with BrokerProcess(url, log_dir=tmp_path / "plain") as plain:
        assert "BYPASSRLS" not in plain.log_tail(200)
    with BrokerProcess(as_superuser, log_dir=tmp_path / "super") as root:
        log = root.log_tail(200)
    assert "the database role 'postgres' is a superuser or has BYPASSRLS" in log, log
