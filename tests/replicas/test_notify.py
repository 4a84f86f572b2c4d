"""`broker.db.notify` in one process, on SQLite and PostgreSQL: a note published in a
transaction reaches this process's subscribers when it commits, and never when it rolls
back (the cross-process half: tests/replicas/test_revocation.py)."""

from __future__ import annotations

import asyncio

import pytest

from broker.db import notify
from broker.db.database import Database
from broker.db.notify import Note, Topic


class Boom(Exception):
    pass


async def rolled_back(db: Database) -> None:
    async with db.transaction() as conn:
        await notify.publish(conn, Note(Topic.STORAGE, "t2"))
        raise Boom


def test_a_note_is_delivered_at_commit_and_never_after_a_rollback(database_url: str) -> None:
    got: list[Note] = []
    dropped: list[bool] = []

    async def scenario() -> None:
        db = Database.from_url(database_url)
        db.notices.subscribe(got.append, lambda: dropped.append(True))
        try:
            before = db.notices.generation
            async with db.transaction() as conn:
                await notify.publish(conn, Note(Topic.POLICY, "t1"))
                assert got == []  # not before the commit
                assert db.notices.generation == before
            assert got == [Note(Topic.POLICY, "t1")]
            assert db.notices.generation == before + 1
            with pytest.raises(Boom):
                await rolled_back(db)
            async for txn in db.attempts():
                async with txn as conn:
                    await notify.publish(conn, Note(Topic.DEVICE_REVOKED, "t3", "d1"))
        finally:
            await db.close()

    asyncio.run(scenario())
    assert got == [Note(Topic.POLICY, "t1"), Note(Topic.DEVICE_REVOKED, "t3", "d1")]
    assert dropped == []
