"""Database engine: SQLite (embedded default) or PostgreSQL, both through SQLAlchemy's asyncio."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from broker.db import pgbegin, sqlitehop
from broker.errors import ConfigError

SUPPORTED_DRIVERS = {"sqlite+aiosqlite", "postgresql+asyncpg"}
# A pooled connection idle this long may have been closed by the server or a proxy: it is
# pinged at checkout (and replaced if dead). A busy pool's connections are not pinged (no
# round trip per request); one that still dies is found at its first statement and the
# transaction is run again (`broker.db.database`).
PING_AFTER_IDLE = 30.0  # seconds
_CHECKED_IN = "bucketreel.checked_in_at"
POOL_SIZE = 20  # PostgreSQL connections per broker process, at most (as 10 + 10 overflow were)


def create_engine(url: str) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.drivername not in SUPPORTED_DRIVERS:
        raise ConfigError(
            f"unsupported database URL scheme {parsed.drivername!r}; use one of "
            + ", ".join(sorted(SUPPORTED_DRIVERS))
        )
    if parsed.drivername.startswith("sqlite"):
        # module: a statement in one hop to aiosqlite's thread, not four (`sqlitehop`).
        engine = create_async_engine(
            parsed, connect_args={"timeout": 30}, hide_parameters=True, module=sqlitehop.dbapi()
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # hide_parameters: a failing statement's values (hashes, sealed secrets) never reach a log.
    # module: asyncpg connections that can declare a tenant with their BEGIN (`pgbegin`).
    # Up to POOL_SIZE connections, all kept: a burst that opened overflow connections and
    # closed them again paid a connection and a prepare of each statement every time.
    engine = create_async_engine(
        parsed, pool_size=POOL_SIZE, max_overflow=0, pool_pre_ping=False, hide_parameters=True,
        module=pgbegin.dbapi(),
    )
    dialect = engine.sync_engine.dialect

    def checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN] = time.monotonic()

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_CHECKED_IN)
        if since is None or time.monotonic() - since < PING_AFTER_IDLE:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:  # any failure: the pool replaces the connection
            raise DisconnectionError("an idle pooled connection is gone") from exc

    event.listen(engine.sync_engine, "checkin", checked_in)
    event.listen(engine.sync_engine, "checkout", checkout)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"
