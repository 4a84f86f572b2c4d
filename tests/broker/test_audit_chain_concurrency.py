"""The audit chain links entries at commit, under a short per-tenant lock: writers of one
tenant never wait on each other's work, and the chain stays whole and keyed with several
database handles (as several broker replicas) writing one tenant at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, select, update

from broker.audit import log as audit
from broker.db import migrate
from broker.db.database import Database
from broker.db.schema import audit_log, tenants
from broker.db.scope import TenantScope
from broker.sealing import ChainKeys
from broker.settings import MasterKeys

KEYS = ChainKeys.from_master(MasterKeys(keys={"v1": b"k" * 32}, current="v1"))
POSTGRESQL = pytest.mark.parametrize("empty_database", ["postgresql"], indirect=True)


async def _tenant(url: str) -> Database:
    db = Database.from_url(url, audit_keys=KEYS)
    await migrate.upgrade(db.engine, audit_keys=KEYS)
    async with db.transaction() as conn:
        await conn.execute(insert(tenants).values(id="t", name="t", created_at=datetime.now(UTC)))
    return db


async def _write(db: Database, replica: str, count: int) -> None:
    for i in range(count):
        async for txn in db.attempts():
            async with txn as conn:
                scope = TenantScope(conn, "t")
                await scope.execute(update(tenants).where(tenants.c.id == "t").values(name=replica))
                await audit.record(
                    scope, at=datetime.now(UTC), actor=f"replica:{replica}", action="x",
                    target=str(i),
                )
                await audit.record(
                    scope, at=datetime.now(UTC), actor=f"replica:{replica}", action="y",
                    target=str(i),
                )


def test_replicas_writing_one_tenant_at_once_keep_one_whole_keyed_chain(
    empty_database: str,
) -> None:
    async def go() -> None:
        first = await _tenant(empty_database)
        others = [Database.from_url(empty_database, audit_keys=KEYS) for _ in range(2)]
        handles = [first, *others]
        try:
            await asyncio.gather(*(
                _write(db, f"r{n}", 15) for n, db in enumerate(handles) for _ in range(2)
            ))
            async with first.read() as conn:
                scope = TenantScope(conn, "t")
                report = await audit.verify_chain(scope)
                rows = (await scope.execute(
                    select(audit_log.c.actor, audit_log.c.action, audit_log.c.target)
                    .where(audit_log.c.tenant_id == "t").order_by(audit_log.c.seq)
                )).all()
            assert report.intact, report.problems
            assert report.entries == 3 * 2 * 15 * 2
            assert report.key_versions == {"v1": report.entries}
            # a transaction's entries are adjacent and in the order it recorded them
            for x, y in zip(rows[::2], rows[1::2], strict=True):
                assert (x.action, y.action) == ("x", "y")
                assert (x.actor, x.target) == (y.actor, y.target)
        finally:
            for db in handles:
                await db.close()

    asyncio.run(go())


def test_an_entry_is_gone_with_its_rolled_back_change(empty_database: str) -> None:
    """The entry is in the change's own transaction: neither commits without the other."""

    async def go() -> None:
        db = await _tenant(empty_database)
        try:
            async def change_then_die() -> None:
                async with db.transaction() as conn:
                    scope = TenantScope(conn, "t")
                    await scope.execute(
                        update(tenants).where(tenants.c.id == "t").values(name="changed")
                    )
                    await audit.record(
                        scope, at=datetime.now(UTC), actor="operator", action="x", target="y"
                    )
                    raise RuntimeError("the process dies before the commit")

            with pytest.raises(RuntimeError, match="dies"):
                await change_then_die()
            async with db.read() as conn:
                scope = TenantScope(conn, "t")
                report = await audit.verify_chain(scope)
                name = (await scope.execute(select(tenants.c.name))).scalar_one()
            assert (report.entries, report.intact, name) == (0, True, "t")
        finally:
            await db.close()

    asyncio.run(go())


@POSTGRESQL
def test_an_open_transaction_with_an_entry_does_not_hold_up_the_tenant(
    empty_database: str,
) -> None:
    """The chain lock is taken as a transaction's last statements, not when it records: a
    transaction still at work with an entry queued holds nothing another writer waits for."""

    async def go() -> None:
        db = await _tenant(empty_database)
        try:
            recorded, release = asyncio.Event(), asyncio.Event()

            async def slow() -> None:
                async with db.transaction() as conn:
                    scope = TenantScope(conn, "t")
                    await audit.record(
                        scope, at=datetime.now(UTC), actor="slow", action="x", target="1"
                    )
                    recorded.set()
                    await release.wait()  # still at its work, the entry queued

            task = asyncio.create_task(slow())
            await recorded.wait()
            async with asyncio.timeout(10):  # before the fix this waited for `slow` forever
                await _write(db, "quick", 1)
            release.set()
            await task
            async with db.read() as conn:
                report = await audit.verify_chain(TenantScope(conn, "t"))
                actors = (await conn.execute(
                    select(audit_log.c.actor).order_by(audit_log.c.seq)
                )).scalars().all()
            assert report.intact, report.problems
            assert actors == ["replica:quick", "replica:quick", "slow"]  # in commit order
        finally:
            await db.close()

    asyncio.run(go())
