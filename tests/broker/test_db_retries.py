"""The transaction layer under contention (PostgreSQL, which reports deadlocks): a deadlock
victim is rolled back and run again, and when its attempts run out the answer is a 503 with
`Retry-After`, never a 500. And the audit chain's lock cannot be taken after a write, the
order that used to deadlock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import insert, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from broker.audit import log as audit
from broker.db import migrate
from broker.db.database import Database
from broker.db.schema import tenants
from broker.db.scope import TenantScope
from broker.errors import ServiceUnavailable
from broker.sealing import ChainKeys
from broker.settings import MasterKeys
from broker.web import middleware

POSTGRESQL = pytest.mark.parametrize("empty_database", ["postgresql"], indirect=True)


async def two_rows(db: Database) -> None:
    async with db.transaction() as conn:
        await conn.execute(text("CREATE TABLE pair (id int PRIMARY KEY, n int NOT NULL)"))
        await conn.execute(text("INSERT INTO pair VALUES (1, 0), (2, 0)"))


async def crossing(
    db: Database, *, tries_of_victim: int
) -> tuple[list[str], BaseException | None]:
    """Two transactions lock the pair's rows in opposite orders. The victim waits first, so
    PostgreSQL's deadlock check (after deadlock_timeout) runs first there and aborts it."""
    runs: list[str] = []
    first_locked = {name: asyncio.Event() for name in ("victim", "other")}

    async def body(conn: AsyncConnection, name: str, mine: int, theirs: int) -> None:
        runs.append(name)
        await conn.execute(text("UPDATE pair SET n = n + 1 WHERE id = :id"), {"id": mine})
        first_locked[name].set()
        await first_locked["other" if name == "victim" else "victim"].wait()
        if name == "other":  # the victim is waiting already when this one starts to
            await asyncio.sleep(0.3)
        await conn.execute(text("UPDATE pair SET n = n + 1 WHERE id = :id"), {"id": theirs})

    async def victim() -> None:
        async for txn in db.attempts(tries_of_victim):
            async with txn as conn:
                await body(conn, "victim", 1, 2)

    async def other() -> None:
        async for txn in db.attempts():
            async with txn as conn:
                await body(conn, "other", 2, 1)

    results = await asyncio.gather(victim(), other(), return_exceptions=True)
    assert not isinstance(results[1], BaseException), results[1]
    failure = results[0] if isinstance(results[0], BaseException) else None
    return runs, failure


@POSTGRESQL
def test_a_deadlock_victim_is_run_again_and_both_transactions_commit(
    empty_database: str,
) -> None:
    async def go() -> None:
        db = Database.from_url(empty_database)
        try:
            await two_rows(db)
            runs, failure = await crossing(db, tries_of_victim=3)
            assert failure is None, failure
            assert sorted(runs) == ["other", "victim", "victim"]  # the victim, twice
            async with db.transaction() as conn:
                counts = (await conn.execute(text("SELECT n FROM pair ORDER BY id"))).all()
            assert [c.n for c in counts] == [2, 2]  # each transaction's two updates, once
        finally:
            await db.close()

    asyncio.run(go())


@POSTGRESQL
def test_a_deadlock_still_reported_after_the_last_attempt_is_a_503_with_retry_after(
    empty_database: str,
) -> None:
    async def go() -> None:
        db = Database.from_url(empty_database)
        try:
            await two_rows(db)
            runs, failure = await crossing(db, tries_of_victim=1)
            assert isinstance(failure, ServiceUnavailable), failure
            assert runs.count("victim") == 1
            assert failure.retry_after == 1
            await answered_by_the_error_middleware(failure)
        finally:
            await db.close()

    asyncio.run(go())


async def answered_by_the_error_middleware(failure: ServiceUnavailable) -> None:
    async def handler(_request: web.Request) -> web.Response:
        raise failure

    app = web.Application(middlewares=[middleware.errors])
    app.router.add_post("/", handler)
    async with TestClient(TestServer(app)) as client:
        reply = await client.post("/")
        assert reply.status == 503
        assert reply.headers["Retry-After"] == "1"
        body = await reply.json()
        assert body["error"] == "service_unavailable"
        assert "busy" in body["message"]


@POSTGRESQL
def test_the_writer_turn_after_a_write_is_refused_and_entries_link_at_commit(
    empty_database: str,
) -> None:
    """The tenant's writer turn taken after a write is a bug the layer names, not a deadlock
    waiting to happen under load; an audit entry after a write is fine: the chain links it
    as the transaction's last statements, under its own short lock."""

    async def go() -> None:
        keys = ChainKeys.from_master(MasterKeys(keys={"v1": b"k" * 32}, current="v1"))
        db = Database.from_url(empty_database, audit_keys=keys)
        try:
            await migrate.upgrade(db.engine, audit_keys=keys)
            now = datetime.now(UTC)
            rename = update(tenants).where(tenants.c.id == "t").values(name="renamed")
            async with db.transaction() as conn:
                await conn.execute(insert(tenants).values(id="t", name="t", created_at=now))
            async with db.transaction() as conn:
                scope = TenantScope(conn, "t")
                await scope.execute(rename)
                with pytest.raises(audit.ChainLockOrder):
                    await audit.lock_chain(scope)
                await conn.rollback()
            async with db.transaction() as conn:  # write, then audit: linked at commit
                scope = TenantScope(conn, "t")
                await scope.execute(rename)
                await audit.record(scope, at=now, actor="operator", action="x", target="y")
                await audit.record(scope, at=now, actor="operator", action="x", target="z")
                assert await audit.head(scope) is None  # not linked before the commit
            async with db.read() as conn:
                report = await audit.verify_chain(TenantScope(conn, "t"))
            assert report.intact, report.problems
            assert report.entries == 2
        finally:
            await db.close()

    asyncio.run(go())
