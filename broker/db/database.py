"""The database handle the app holds: an engine and short transactions over it.

Write transactions run as `attempts()`: a deadlock or serialization failure the database
still reports (the lock order in README's design notes should leave none) rolls the
transaction back and runs it again, a few times, after a short random pause; then the
request is answered 503 with `Retry-After`, never 500, as is SQLite still busy after its
busy_timeout. A retried body must do nothing but
database work (it may run more than once): no network, no thread, no process-wide state.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from broker.db import migrate, notify
from broker.db.engine import create_engine, is_sqlite
from broker.errors import ServiceUnavailable

if TYPE_CHECKING:
    from broker.sealing import ChainKeys

log = logging.getLogger(__name__)

# PostgreSQL's deadlock_detected and serialization_failure: the transaction may pass if rerun.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
ATTEMPTS = 5
_FIRST_PAUSE = 0.01  # seconds, doubled per attempt, with jitter
# Where `broker.audit.log` finds the audit keys: on every connection this handle hands out.
AUDIT_KEYS_INFO = "bucketreel.audit_keys"


def _rerunnable(exc: BaseException) -> bool:
    """A deadlock or serialization failure (PostgreSQL): rerunning the transaction may pass."""
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    return (getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)) in (
        RETRYABLE_SQLSTATES
    )


def is_contention(exc: BaseException) -> bool:
    """A deadlock or serialization failure (PostgreSQL), or SQLite still busy after its
    busy_timeout (which has waited already, so it is not rerun): nothing was decided, and
    the same transaction may pass later."""
    if not isinstance(exc, DBAPIError):
        return False
    if _rerunnable(exc):
        return True
    orig = exc.orig
    return any(
        isinstance(error, sqlite3.OperationalError) and "database is locked" in str(error)
        for error in (orig, getattr(orig, "__cause__", None))
    )


def _busy() -> ServiceUnavailable:
    return ServiceUnavailable(
        "the database is busy with concurrent changes; try again", retry_after=1
    )


class Database:
    def __init__(self, engine: AsyncEngine, *, audit_keys: ChainKeys | None = None) -> None:
        self.engine = engine
        # The audit chain's MAC keys (derived from the master keys, never stored in the
        # database); `build_services` sets them from the settings.
        self.audit_keys = audit_keys
        # Invalidations this process hears (`broker.db.notify`): its own at each commit, other
        # replicas' through PostgreSQL (`listen`).
        self.notices = notify.Notices()
        if is_sqlite(engine):
            # SQLite takes the write lock at BEGIN IMMEDIATE, so two writers queue on
            # busy_timeout instead of one failing halfway through (the audit chain needs it).
            event.listen(engine.sync_engine, "connect", _sqlite_manual_begin)
            event.listen(engine.sync_engine, "begin", _sqlite_begin_immediate)

    @classmethod
    def from_url(cls, url: str, *, audit_keys: ChainKeys | None = None) -> Database:
        return cls(create_engine(url), audit_keys=audit_keys)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        pending = notify.Pending(self.notices.origin)
        async with self.engine.begin() as conn:
            conn.info[AUDIT_KEYS_INFO] = self.audit_keys
            conn.info[notify.PENDING_INFO] = pending
            try:
                yield conn
            finally:
                del conn.info[notify.PENDING_INFO]
        # Committed (a failed or rolled-back transaction raised above): this process's
        # subscribers hear what it published; other replicas hear it from PostgreSQL.
        self.notices.deliver(pending.notes, source="commit")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One transaction, run once (reads; writes that cannot be rerun). A deadlock or
        serialization failure is answered 503, never 500."""
        try:
            async with self._begin() as conn:
                yield conn
        except DBAPIError as exc:
            if is_contention(exc):
                raise _busy() from None
            raise

    async def ping(self) -> None:
        """One round trip (`SELECT 1`): raises when the database cannot be reached."""
        async with self.transaction() as conn:
            await conn.execute(text("SELECT 1"))

    async def unready(self) -> str | None:
        """Why this database cannot serve requests now, or None: it answers (one round trip)
        and its schema is not behind the migration this code ships (readiness, `/healthz`;
        a newer schema, during a rolling upgrade, is fine: `migrate.is_behind`)."""
        try:
            async with self.transaction() as conn:
                revision = (
                    await conn.execute(text("SELECT version_num FROM alembic_version"))
                ).scalar()
        except Exception as exc:  # a readiness probe reports, it does not raise
            return f"database unreachable: {type(exc).__name__}"
        if migrate.is_behind(revision):
            return (
                f"the database is at migration {revision}, this broker needs "
                f"{migrate.head_revision()}: run `bucketreel-broker migrate`"
            )
        return None

    def attempts(self, tries: int = ATTEMPTS) -> Attempts:
        """A write transaction that is rerun on a deadlock or serialization failure:

            async for txn in db.attempts():
                async with txn as conn:
                    ...  # database work only: it may run more than once
        """
        return Attempts(self, tries)

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

    async def listen(self) -> None:
        """Hear other replicas' invalidations for as long as this runs (PostgreSQL)."""
        await notify.listen_forever(self.engine, self.notices)

    async def close(self) -> None:
        await self.engine.dispose()


class Attempts:
    """The attempts of one write transaction (`Database.attempts`)."""

    def __init__(self, db: Database, tries: int) -> None:
        self._db = db
        self._left = max(1, tries)
        self._done = False
        self.retries = 0

    def __aiter__(self) -> Attempts:
        return self

    async def __anext__(self) -> Attempt:
        if self._done:
            raise StopAsyncIteration
        return Attempt(self, self._db._begin())

    async def _failed(self, exc: BaseException) -> None:
        """After a rolled-back attempt: pause and go on, or give up with a 503."""
        self._left -= 1
        if self._left <= 0:
            self._done = True
            log.warning("a transaction met contention %d times; answering 503", self.retries + 1)
            raise _busy() from None
        self.retries += 1
        log.info("transaction rolled back (%s); running it again", _state(exc))
        await asyncio.sleep(random.uniform(0.5, 1.5) * _FIRST_PAUSE * 2 ** (self.retries - 1))

    def _succeeded(self) -> None:
        self._done = True


class Attempt:
    def __init__(
        self, attempts: Attempts, begin: AbstractAsyncContextManager[AsyncConnection]
    ) -> None:
        self._attempts = attempts
        self._begin = begin

    async def __aenter__(self) -> AsyncConnection:
        try:
            return await self._begin.__aenter__()
        except DBAPIError as exc:
            if is_contention(exc):
                raise _busy() from None
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        try:
            await self._begin.__aexit__(exc_type, exc, tb)
        except DBAPIError as failure:
            if failure is not exc and is_contention(failure):
                # The commit itself failed: the body's result stands for nothing, and the
                # body may have returned it already, so this attempt cannot be rerun.
                raise _busy() from None
            if failure is not exc:
                raise
        if exc is None:
            self._attempts._succeeded()
            return False
        if is_contention(exc) and not _rerunnable(exc):
            raise _busy() from None  # SQLite, busy for all of busy_timeout already
        if not _rerunnable(exc):
            self._attempts._succeeded()  # the error propagates; no more attempts
            return False
        await self._attempts._failed(exc)
        return True  # rolled back: the loop runs the next attempt


def _state(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    return str(getattr(orig, "sqlstate", None) or type(orig or exc).__name__)


def _sqlite_manual_begin(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None


def _sqlite_begin_immediate(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")
