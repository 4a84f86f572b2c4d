"""The database handle the app holds: an engine and short transactions over it.

Write transactions run as `attempts()`: a deadlock or serialization failure the database
still reports (the lock order in README's design notes should leave none), a connection
found dead at its first use (no pre-ping: `broker.db.engine`), or a body's own
`RerunTransaction` rolls the transaction back and runs it again, a few times, after a short
random pause; then the request is answered 503 with `Retry-After`, never 500, as is SQLite
still busy after its busy_timeout. A retried body must do nothing but
database work (it may run more than once): no network, no thread, no process-wide state.

`read()` is a transaction that only reads: on SQLite a deferred one (`BEGIN`), which takes
no write lock and runs beside the writer (WAL). Every other transaction writes: on SQLite it
takes the write lock at `BEGIN IMMEDIATE`, and the writers of this process queue for it in
order on an asyncio lock first, so they wait in the event loop rather than in SQLite's busy
handler, which polls. Work registered with `before_commit` runs as the body's last
statements, just before the commit (the audit chain links its entries there).
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sqlalchemy import Executable, Row, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from broker.db import migrate, notify, pgbegin
from broker.db.engine import create_engine, is_sqlite
from broker.db.scope import DECLARED_INFO
from broker.errors import ServiceUnavailable

if TYPE_CHECKING:
    from broker.sealing import ChainKeys

log = logging.getLogger(__name__)

# PostgreSQL's deadlock_detected and serialization_failure: the transaction may pass if rerun.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
ATTEMPTS = 5
SQLITE_WRITER_WAIT = 30.0  # seconds, as SQLite's busy_timeout (`broker.db.engine`)
_FIRST_PAUSE = 0.01  # seconds, doubled per attempt, with jitter
# Where `broker.audit.log` finds the audit keys: on every connection this handle hands out.
AUDIT_KEYS_INFO = "bucketreel.audit_keys"
_STATE_INFO = "bucketreel.transaction"  # the open transaction's `TransactionState`
# Where a transaction finds `Database.local`: what its handle keeps across transactions.
LOCAL_INFO = "bucketreel.local"
_READ_OPTION = "bucketreel_read"  # execution option: SQLite begins deferred


class RerunTransaction(Exception):
    """Raised by a body of `attempts()` that met a concurrent change (a row another
    transaction inserted first): the attempt is rolled back and run again, and sees it."""


BeforeCommit = Callable[[AsyncConnection], Awaitable[None]]


@dataclass(slots=True)
class TransactionState:
    """What the open transaction carries until it ends: work to run just before its commit,
    and the values that work collects (`broker.audit.log`'s pending entries)."""

    before_commit: list[BeforeCommit] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)


def transaction_state(conn: AsyncConnection) -> TransactionState:
    state = conn.info.get(_STATE_INFO)
    if not isinstance(state, TransactionState):
        raise RuntimeError("this connection is not in a transaction of `Database`")
    return state


def before_commit(conn: AsyncConnection, work: BeforeCommit) -> None:
    """Run `work(conn)` as the transaction's last statements, once, if the body succeeds."""
    hooks = transaction_state(conn).before_commit
    if work not in hooks:
        hooks.append(work)


def _rerunnable(exc: BaseException) -> bool:
    """A deadlock or serialization failure (PostgreSQL), a connection that turned out dead
    before anything was decided on it, or the body's own `RerunTransaction`: rerunning the
    transaction may pass."""
    if isinstance(exc, RerunTransaction):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    return (getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)) in (
        RETRYABLE_SQLSTATES
    )


def is_contention(exc: BaseException) -> bool:
    """A deadlock or serialization failure (PostgreSQL), or SQLite still busy after its
    busy_timeout (which has waited already, so it is not rerun): nothing was decided, and
    the same transaction may pass later."""
    if isinstance(exc, RerunTransaction):
        return True
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
        # What the layers above keep for this handle across transactions, in this process
        # (`broker.audit.log`: the chain head each tenant's next link expects).
        self.local: dict[str, Any] = {}
        # SQLite: this process's writers take turns here before BEGIN IMMEDIATE (None on
        # PostgreSQL, whose writers lock rows, not the database)
        self._writer: asyncio.Lock | None = asyncio.Lock() if is_sqlite(engine) else None
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
    async def _begin(
        self, *, read: bool = False, tenant: str | None = None
    ) -> AsyncIterator[AsyncConnection]:
        pending = notify.Pending(self.notices.origin)
        async with AsyncExitStack() as stack:
            if self._writer is not None and not read:
                await self._writer_turn(self._writer)
                stack.callback(self._writer.release)
            conn = await stack.enter_async_context(self.engine.connect())
            if read:
                conn = await conn.execution_options(**{_READ_OPTION: True})
            await stack.enter_async_context(conn.begin())
            if tenant is not None:
                _declare_with_begin(conn, tenant, stack)
            conn.info[AUDIT_KEYS_INFO] = self.audit_keys
            conn.info[LOCAL_INFO] = self.local
            conn.info[notify.PENDING_INFO] = pending
            state = conn.info[_STATE_INFO] = TransactionState()
            try:
                yield conn
                for work in state.before_commit:
                    await work(conn)
            finally:
                conn.info.pop(_STATE_INFO, None)
                conn.info.pop(notify.PENDING_INFO, None)
        # Committed (a failed or rolled-back transaction raised above): this process's
        # subscribers hear what it published; other replicas hear it from PostgreSQL.
        self.notices.deliver(pending.notes, source="commit")

    @staticmethod
    async def _writer_turn(writer: asyncio.Lock) -> None:
        """This process's turn to write on SQLite, waiting as long as SQLite's busy_timeout
        would (a write transaction opened inside another would wait forever: 503 instead)."""
        try:
            await asyncio.wait_for(writer.acquire(), SQLITE_WRITER_WAIT)
        except TimeoutError:
            raise _busy() from None

    @asynccontextmanager
    async def transaction(self, *, tenant: str | None = None) -> AsyncIterator[AsyncConnection]:
        """One transaction, run once (writes that cannot be rerun). A deadlock, serialization
        failure or dead connection is answered 503, never 500. `tenant`: the one tenant its
        `TenantScope`s will name, declared with its BEGIN (PostgreSQL: no round trip of its
        own; a scope of another tenant is refused)."""
        async with self._once(read=False, tenant=tenant) as conn:
            yield conn

    @asynccontextmanager
    async def read(self, *, tenant: str | None = None) -> AsyncIterator[AsyncConnection]:
        """A transaction that only reads (deferred on SQLite: no write lock), run once."""
        async with self._once(read=True, tenant=tenant) as conn:
            yield conn

    @asynccontextmanager
    async def _once(self, *, read: bool, tenant: str | None) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._begin(read=read, tenant=tenant) as conn:
                yield conn
        except DBAPIError as exc:
            if is_contention(exc) or exc.connection_invalidated:
                raise _busy() from None
            raise

    async def call(self, statement: Executable, params: dict[str, Any]) -> Row[Any] | None:
        """PostgreSQL: one statement as a transaction of its own (autocommit: no BEGIN and
        no COMMIT round trip), its first row. For a function that declares its tenant itself
        (migration 0017's `bucketreel_heartbeat`): the statement must name no tenant row
        otherwise, since nothing declares one for it. A dead connection or contention is
        answered 503, as for a transaction run once."""
        if self.dialect != "postgresql":
            raise RuntimeError("Database.call is for PostgreSQL's tenant-declaring functions")
        try:
            async with self.engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                return (await conn.execute(statement, params)).first()
        except DBAPIError as exc:
            if is_contention(exc) or exc.connection_invalidated:
                raise _busy() from None
            raise

    async def ping(self) -> None:
        """One round trip (`SELECT 1`): raises when the database cannot be reached."""
        async with self.read() as conn:
            await conn.execute(text("SELECT 1"))

    async def unready(self) -> str | None:
        """Why this database cannot serve requests now, or None: it answers (one round trip)
        and its schema is not behind the migration this code ships (readiness, `/healthz`;
        a newer schema, during a rolling upgrade, is fine: `migrate.is_behind`)."""
        try:
            async with self.read() as conn:
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

    def attempts(self, tries: int = ATTEMPTS, *, tenant: str | None = None) -> Attempts:
        """A write transaction that is rerun on a deadlock or serialization failure:

            async for txn in db.attempts():
                async with txn as conn:
                    ...  # database work only: it may run more than once

        `tenant`: as for `transaction`.
        """
        return Attempts(self, tries, tenant)

    async def bypasses_row_security(self) -> str | None:
        """On PostgreSQL, the role's name when it skips row-level security (a superuser or a
        BYPASSRLS role: the second tenant wall of migration 0007 does not hold); else None."""
        if self.dialect != "postgresql":
            return None
        async with self.read() as conn:
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

    def __init__(self, db: Database, tries: int, tenant: str | None = None) -> None:
        self._db = db
        self._tenant = tenant
        self._left = max(1, tries)
        self._done = False
        self.retries = 0

    def __aiter__(self) -> Attempts:
        return self

    async def __anext__(self) -> Attempt:
        if self._done:
            raise StopAsyncIteration
        return Attempt(self, self._db._begin(tenant=self._tenant))

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


def _declare_with_begin(conn: AsyncConnection, tenant: str, stack: AsyncExitStack) -> None:
    """Have the transaction's BEGIN declare `tenant` (PostgreSQL, `broker.db.pgbegin`), so
    that its `TenantScope`s need no round trip of their own; until it ends. Elsewhere (SQLite,
    or a tenant id not sent as a literal) the scopes declare as usual."""
    sync = conn.sync_connection
    driver: Any = None if sync is None else sync.connection.dbapi_connection
    literal = pgbegin.literal_tenant(tenant)
    if not isinstance(driver, pgbegin.DeclaringConnection) or literal is None:
        return
    driver.declare = literal
    conn.info[DECLARED_INFO] = literal

    def done() -> None:
        driver.declare = None  # never carried to the connection's next transaction
        conn.info.pop(DECLARED_INFO, None)

    stack.callback(done)


def _state(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    return str(getattr(orig, "sqlstate", None) or type(orig or exc).__name__)


def _sqlite_manual_begin(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None


def _sqlite_begin_immediate(conn: Any) -> None:
    read = conn.get_execution_options().get(_READ_OPTION, False)
    conn.exec_driver_sql("BEGIN" if read else "BEGIN IMMEDIATE")
