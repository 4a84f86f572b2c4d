"""Invalidations every replica hears: PostgreSQL `LISTEN/NOTIFY` (in process on SQLite).

Whatever a broker process keeps in memory about a tenant (a cache) must not outlive a change
made through another replica. So a change others may hold publishes a `Note` inside its own
writing transaction, `await notify.publish(conn, Note(...))`: on PostgreSQL that is
`pg_notify`, which the database delivers only if, and when, the transaction commits, to every
replica listening. The writing process gets its own notes from `Database` right after the
commit (so on SQLite too, where there is one serving process); a rolled-back or rerun
attempt publishes nothing. On SQLite an operator's command is another process that no
serving broker hears: a cache there must also check a version the request reads anyway.

Each replica listens on a connection of its own, outside the pool (`listen_forever`, a task
of the app's life). Notifications sent while that connection is down are lost with it: so on
every (re)connection subscribers are told to drop everything (`on_reset`), and reconnecting
backs off from 0.5 s to 30 s.

Revocation does not rest on this: every request checks its device or session against the
database. Notes keep what a process caches from outliving the change.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from broker.errors import stop_if_cancelled

log = logging.getLogger(__name__)

CHANNEL = "bucketreel_invalidate"
# The listener's name in pg_stat_activity (an operator sees one per replica).
APPLICATION_NAME = "bucketreel-invalidations"
PENDING_INFO = "bucketreel.pending_notes"  # where a transaction collects its notes
FIRST_DELAY = 0.5  # seconds before reconnecting, doubled up to MAX_DELAY
MAX_DELAY = 30.0
CONNECT_TIMEOUT = 10.0
KEEPALIVE = 30.0  # seconds between probes of an idle listener (a dead peer shows)
PROBE_TIMEOUT = 5.0


class Topic(StrEnum):
    DEVICE_REVOKED = "device_revoked"  # key: the device id
    PERSON_ENDED = "person_ended"  # key: the user id; their sessions (and maybe devices) end
    STORAGE = "storage"  # the tenant's bucket configuration or credentials changed
    POLICY = "policy"  # the tenant's recording policy changed


@dataclass(frozen=True, slots=True)
class Note:
    topic: Topic
    tenant_id: str
    key: str = ""


OnNote = Callable[[Note], None]
OnReset = Callable[[], None]


class Notices:
    """This process's subscribers, and what reached them (`received`, `resets`: counters)."""

    def __init__(self) -> None:
        self.origin = secrets.token_hex(8)  # tells this process's own notes apart
        self._subscribers: list[tuple[OnNote, OnReset]] = []
        self.received = 0
        self.resets = 0

    @property
    def generation(self) -> int:
        """Moves on with every note and reset: a cache takes it before the read that fills
        it and keeps the value only if it has not moved (a change raced the read)."""
        return self.received + self.resets

    def subscribe(self, on_note: OnNote, on_reset: OnReset) -> None:
        """`on_note(note)` for each change; `on_reset()`: drop everything, notes were missed."""
        self._subscribers.append((on_note, on_reset))

    def deliver(self, notes: Iterable[Note], *, source: str) -> None:
        for note in notes:
            self.received += 1
            for on_note, _ in self._subscribers:
                on_note(note)
            log.debug(
                "invalidation %s tenant=%s key=%s (%s): %d subscriber(s), %d received",
                note.topic, note.tenant_id, note.key or "-", source, len(self._subscribers),
                self.received,
            )

    def reset(self, why: str) -> None:
        self.resets += 1
        for _, on_reset in self._subscribers:
            on_reset()
        log.info("%s: every cache dropped (%d subscriber(s))", why, len(self._subscribers))


@dataclass
class Pending:
    """The notes of one transaction, delivered in process once it commits."""

    origin: str
    notes: list[Note] = field(default_factory=list)


async def publish(conn: AsyncConnection, note: Note) -> None:
    """Publish `note` when the transaction `conn` is in commits (never if it rolls back)."""
    pending = conn.info.get(PENDING_INFO)
    if isinstance(pending, Pending):
        pending.notes.append(note)
    if conn.dialect.name == "postgresql":
        payload = {
            "topic": str(note.topic), "tenant": note.tenant_id, "key": note.key,
            "origin": pending.origin if isinstance(pending, Pending) else "",
        }
        await conn.execute(
            text("SELECT pg_notify(:channel, :payload)"),
            {"channel": CHANNEL, "payload": json.dumps(payload)},
        )


def _parse(payload: str) -> tuple[Note, str] | None:
    try:
        data = json.loads(payload)
        return Note(Topic(data["topic"]), str(data["tenant"]), str(data["key"])), str(
            data["origin"]
        )
    except (ValueError, KeyError, TypeError):
        return None


def _received(notices: Notices, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
    parsed = _parse(payload)
    if parsed is None:  # not ours to read: assume the worst
        notices.reset(f"an unreadable note on {CHANNEL}")
        return
    note, origin = parsed
    if origin != notices.origin:  # our own were delivered at our commit
        notices.deliver([note], source="notify")


async def listen_forever(engine: AsyncEngine, notices: Notices) -> None:
    """Listen on `CHANNEL` for the process's life, reconnecting with backoff. Nothing to do
    on SQLite: one process, whose own notes reach it at commit."""
    if engine.dialect.name != "postgresql":
        return
    import asyncpg  # type: ignore[import-untyped,unused-ignore]

    errors = (OSError, TimeoutError, ConnectionError, asyncpg.PostgresError,
              asyncpg.InterfaceError)
    cargs, cparams = engine.dialect.create_connect_args(engine.url)
    for adapter_only in ("async_creator_fn", "prepared_statement_cache_size",
                         "prepared_statement_name_func"):
        cparams.pop(adapter_only, None)
    cparams["server_settings"] = {"application_name": APPLICATION_NAME}
    delay = FIRST_DELAY
    while True:
        try:
            conn = await asyncio.wait_for(
                asyncpg.connect(*cargs, **cparams), timeout=CONNECT_TIMEOUT
            )
        except errors as exc:
            stop_if_cancelled()
            log.warning("cannot listen for invalidations (%s); trying again in %.1f s",
                        type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)
            continue
        since = time.monotonic()
        try:
            await _listen(conn, notices)
        except errors as exc:
            stop_if_cancelled()
            log.warning("lost the invalidation listener (%s); reconnecting in %.1f s",
                        type(exc).__name__, delay)
        finally:
            conn.terminate()
        if time.monotonic() - since > MAX_DELAY:
            delay = FIRST_DELAY  # it had been fine for a while: no backoff carried over
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_DELAY)


async def _listen(conn: Any, notices: Notices) -> None:
    """LISTEN on `conn` until it is lost (raises ConnectionError then)."""
    lost = asyncio.Event()
    conn.add_termination_listener(lambda _conn: lost.set())
    await conn.add_listener(CHANNEL, lambda *args: _received(notices, *args))
    # Listening now: whatever changed before this, while nobody listened, is forgotten.
    notices.reset("listening for invalidations")
    while not lost.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(lost.wait(), timeout=KEEPALIVE)
        if not lost.is_set():
            await asyncio.wait_for(conn.execute("SELECT 1"), timeout=PROBE_TIMEOUT)
    raise ConnectionError("the database closed the listening connection")
