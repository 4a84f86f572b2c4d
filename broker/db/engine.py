"""Database engine: SQLite (embedded default) or PostgreSQL, both through SQLAlchemy's asyncio."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from broker.errors import ConfigError

SUPPORTED_DRIVERS = {"sqlite+aiosqlite", "postgresql+asyncpg"}


def create_engine(url: str) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.drivername not in SUPPORTED_DRIVERS:
        raise ConfigError(
            f"unsupported database URL scheme {parsed.drivername!r}; use one of "
            + ", ".join(sorted(SUPPORTED_DRIVERS))
        )
    if parsed.drivername.startswith("sqlite"):
        engine = create_async_engine(parsed, connect_args={"timeout": 30}, hide_parameters=True)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # hide_parameters: a failing statement's values (hashes, sealed secrets) never reach a log.
    return create_async_engine(
        parsed, pool_size=10, max_overflow=10, pool_pre_ping=True, hide_parameters=True
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"
