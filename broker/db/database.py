"""The database handle the app holds: an engine and short transactions over it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from broker.db.engine import create_engine, is_sqlite


class Database:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        if is_sqlite(engine):
            # SQLite takes the write lock at BEGIN IMMEDIATE, so two writers queue on
            # busy_timeout instead of one failing halfway through (the audit chain needs it).
            event.listen(engine.sync_engine, "connect", _sqlite_manual_begin)
            event.listen(engine.sync_engine, "begin", _sqlite_begin_immediate)

    @classmethod
    def from_url(cls, url: str) -> Database:
        return cls(create_engine(url))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.begin() as conn:
            yield conn

    async def bypasses_row_security(self) -> str | None:
        """On PostgreSQL, the role's name when it skips row-level security (a superuser or a
        BYPASSRLS role: the second tenant wall of migration 0007 does not hold); else None."""
        if self.dialect != "postgresql":
            return None
        async with self.transaction() as conn:
            row = (await conn.execute(text(
                "SELECT current_user, rolsuper OR rolbypassrls FROM pg_roles"
                " WHERE rolname = current_user"
            ))).first()
        return str(row[0]) if row is not None and row[1] else None

    async def close(self) -> None:
        await self.engine.dispose()


def _sqlite_manual_begin(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None


def _sqlite_begin_immediate(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")
