"""Reading the audit log: view receipts for one person, and filtered searches for admins.

Receipts are the log's `segment.view_url` entries for the person's recordings: who minted a
view URL, when, for which recording and segment. They come from the hash-chained log itself,
so nothing is kept twice and nothing can be shown that the chain does not hold. Listings for
people group them into viewings (`broker.audit.viewings`); the export keeps every entry.

The admin's listing is read newest first in batches of `BATCH` rows (seq below a cursor),
filtered, and cut into pages of rows (`page`): the whole log, page after page.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from typing import Any, TypeVar

from sqlalchemy import ColumnElement

from broker import access
from broker.audit.labels import Labels
from broker.audit.log import Entry, Head, head
from broker.audit.viewings import VIEW_ACTION, Grouper, Row, group
from broker.clock import day_bounds
from broker.db.database import Database
from broker.db.schema import audit_log, recordings, users
from broker.db.scope import TenantScope
from broker.errors import Forbidden
from broker.identity import Principal

T = TypeVar("T")
MAX_ROWS = 1000
BATCH = 500  # log rows read per query while filling a page


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    at: datetime
    viewer: str  # the viewer's email, or "operator" for the command line
    viewer_role: str
    recording_id: str
    seq: int
    own: bool = False  # the person watched their own recording


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditFilter:
    actor: str = ""  # substring of the actor ("user:<id>", "device:<id>", "operator"), or email
    action: str = ""  # exact action
    employee: str = ""  # a user id: entries by or about that person or their recordings
    day: date | None = None  # one day (the export's `?day=`), or the period from `start`
    start: date | None = None  # to `end`, both included
    end: date | None = None
    zone: tzinfo = UTC  # the days are cut in it
    before: int | None = None  # only entries numbered below (the page's cursor)


def _entry(r: Any) -> Entry:
    return Entry(
        seq=r.seq, at=r.at, actor=r.actor, action=r.action, target=r.target,
        details=json.loads(r.details), prev_hash=r.prev_hash, hash=r.hash,
        mac=r.mac, mac_key=r.mac_key,
    )


async def _people(scope: TenantScope) -> dict[str, Any]:
    return {r.id: r for r in await scope.all(users)}


def actor_label(actor: str, people: dict[str, Any]) -> tuple[str, str]:
    """(who, role) for an actor string, with people's emails instead of ids."""
    kind, _, ident = actor.partition(":")
    if kind == "user" and ident in people:
        return people[ident].email, people[ident].role
    return actor, kind


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipts:
    """A person's receipts: every view URL (newest first), the same grouped into viewings,
    and the names those need."""

    user_id: str
    receipts: list[Receipt]
    viewings: list[Row]
    labels: Labels

    def viewing(self, row: Row) -> dict[str, Any]:
        """A viewing as `shared.api.Viewing` shows it."""
        newest = row.newest
        kind, _, ident = newest.actor.partition(":")
        person = self.labels.people.get(ident) if kind == "user" else None
        return {
            "viewer": person.email if person is not None else newest.actor,
            "viewer_id": person.id if person is not None else None,
            "viewer_name": person.display_name if person is not None else None,
            "viewer_role": person.role if person is not None else kind,
            "own": newest.actor == f"user:{self.user_id}",
            "recording_id": row.recording_id,
            "first_at": row.first_at.isoformat(), "last_at": row.last_at.isoformat(),
            "first_seq": row.segments[0], "last_seq": row.segments[-1],
            "views": len(row.entries), "entries": [e.seq for e in row.entries],
        }


async def receipts(scope: TenantScope, user_id: str) -> Receipts:
    """Every view URL minted for this person's recordings, newest first, and grouped into
    viewings. The caller has authorized the read (`broker.access.require_receipts`)."""
    theirs = {r.id for r in await scope.all(recordings, recordings.c.user_id == user_id)}
    people = await _people(scope)
    rows = await scope.all(
        audit_log, audit_log.c.action == VIEW_ACTION, order_by=[audit_log.c.seq.desc()]
    )
    views = [e for e in map(_entry, rows) if e.details.get("recording") in theirs]
    found = []
    for e in views:
        who, role = actor_label(e.actor, people)
        found.append(
            Receipt(at=e.at, viewer=who, viewer_role=role, recording_id=e.details["recording"],
                    seq=int(e.details.get("seq", 0)), own=e.actor == f"user:{user_id}")
        )
    grouped = group(views)
    return Receipts(
        user_id=user_id, receipts=found, viewings=grouped,
        labels=await Labels.read(scope, [r.newest for r in grouped]),
    )


async def receipts_and_head(
    db: Database, principal: Principal, user_id: str
) -> tuple[Receipts, Head | None]:
    """A person's view receipts and, read in the same transaction, the head of the tenant's
    chain (seq, hash, MAC): shown beside the receipts, so that entries removed from the end
    of the log show as a lower number on a later visit."""
    async with db.transaction() as conn:
        scope = TenantScope(conn, principal.tenant_id)
        await access.require_receipts(scope, principal, user_id)
        return await receipts(scope, user_id), await head(scope)


async def actions(scope: TenantScope) -> list[str]:
    return sorted({r.action for r in await scope.all(audit_log)})


def _criteria(wanted: AuditFilter) -> list[ColumnElement[bool]]:
    """The filters the database applies: the action, the period, the cursor."""
    criteria: list[ColumnElement[bool]] = []
    if wanted.action:
        criteria.append(audit_log.c.action == wanted.action)
    first, last = (wanted.day, wanted.day) if wanted.day is not None else (wanted.start, wanted.end)
    if first is not None:
        criteria.append(audit_log.c.at >= day_bounds(first, wanted.zone)[0])
    if last is not None:
        criteria.append(audit_log.c.at < day_bounds(last, wanted.zone)[1])
    if wanted.before is not None:
        criteria.append(audit_log.c.seq < wanted.before)
    return criteria


async def matching(scope: TenantScope, wanted: AuditFilter) -> AsyncIterator[Entry]:
    """Entries matching every given filter, newest first, read `BATCH` rows at a time."""
    people = await _people(scope)
    about: set[str] = set()
    if wanted.employee:
        about = {wanted.employee} | {
            r.id for r in await scope.all(recordings, recordings.c.user_id == wanted.employee)
        }
    criteria = _criteria(wanted)
    below: int | None = None
    while True:
        cursor = [audit_log.c.seq < below] if below is not None else []
        rows = await scope.all(
            audit_log, *criteria, *cursor, order_by=[audit_log.c.seq.desc()], limit=BATCH
        )
        for r in rows:
            if wanted.actor and not _actor_matches(r.actor, wanted.actor, people):
                continue
            if about and not _mentions(r, about):
                continue
            yield _entry(r)
        if len(rows) < BATCH:
            return
        below = rows[-1].seq


async def search(scope: TenantScope, wanted: AuditFilter, *, limit: int | None) -> list[Entry]:
    """Entries matching every given filter, newest first (at most `limit`)."""
    found: list[Entry] = []
    async for entry in matching(scope, wanted):
        found.append(entry)
        if limit is not None and len(found) >= limit:
            break
    return found


@dataclass(frozen=True, slots=True, kw_only=True)
class Page:
    """One page of the admin's listing: rows (viewings grouped), the next page's cursor
    (`before`; None: this page reaches the oldest entry), and the names they need."""

    rows: list[Row]
    older: int | None
    labels: Labels


async def page(scope: TenantScope, wanted: AuditFilter, *, rows: int) -> Page:
    """`rows` rows of matching entries below `wanted.before`, newest first."""
    grouper = Grouper(rows)
    async for entry in matching(scope, wanted):
        if not grouper.add(entry):
            break
    shown = [e for r in grouper.rows for e in r.entries]
    return Page(rows=grouper.rows, older=grouper.older, labels=await Labels.read(scope, shown))


def _actor_matches(actor: str, wanted: str, people: dict[str, Any]) -> bool:
    who, _ = actor_label(actor, people)
    needle = wanted.lower()
    return needle in actor.lower() or needle in who.lower()


def _mentions(row: Any, ids: set[str]) -> bool:
    text = f"{row.actor} {row.target} {row.details}"
    return any(i in text for i in ids)


def json_lines(tenant_id: str, entries: Iterable[Entry]) -> Iterable[str]:
    """The export format: one JSON object per line, with the chain's hashes, oldest first;
    each line carries all that its chain hash covers (`shared.auditchain.export_hash`)."""
    for e in sorted(entries, key=lambda e: e.seq):
        yield json.dumps(
            {
                "tenant_id": tenant_id, "seq": e.seq, "at": e.at.isoformat(),
                "actor": e.actor, "action": e.action, "target": e.target,
                "details": e.details, "prev_hash": e.prev_hash,
                "hash": e.hash, "mac": e.mac, "mac_key": e.mac_key,
            },
            sort_keys=True,
        ) + "\n"


async def receipts_for(db: Database, principal: Principal, user_id: str) -> Receipts:
    """A person's view receipts, for whoever `access.require_receipts` lets read them."""
    async with db.transaction() as conn:
        scope = TenantScope(conn, principal.tenant_id)
        await access.require_receipts(scope, principal, user_id)
        return await receipts(scope, user_id)


async def _for_admin(
    db: Database, principal: Principal, read: Callable[[TenantScope], Awaitable[T]]
) -> tuple[T, list[str], list[Any]]:
    """`read` of the tenant's log for an admin, with every action name and every person."""
    if principal.kind != "user" or principal.role != "admin":
        raise Forbidden("only an admin reads the audit log")
    async with db.transaction() as conn:
        scope = TenantScope(conn, principal.tenant_id)
        found = await read(scope)
        people = await scope.all(users, order_by=[users.c.email])
        return found, await actions(scope), people


async def admin_page(
    db: Database, principal: Principal, wanted: AuditFilter, *, rows: int
) -> tuple[Page, list[str], list[Any]]:
    """A page of the tenant's log for an admin (viewings grouped), every action name, every
    person."""
    return await _for_admin(db, principal, lambda scope: page(scope, wanted, rows=rows))


def described(row: Row, labels: Labels) -> dict[str, Any]:
    """A row as the audit page and `shared.api.AuditRow` show it: names and links."""
    newest, oldest = row.newest, row.oldest
    who = labels.actor(newest.actor)
    if row.viewing and row.recording_id is not None:
        about = labels.recording(row.recording_id)
    else:
        about = labels.about(newest)
    seq = newest.details.get("seq")
    return {
        "kind": "viewing" if row.viewing else "entry",
        "seq": newest.seq, "first_seq": oldest.seq,
        "at": newest.at.isoformat(), "first_at": oldest.at.isoformat(),
        "actor": newest.actor, "actor_name": who.text, "actor_link": who.link,
        "action": newest.action, "about": about.text, "about_link": about.link,
        "recording_id": row.recording_id if row.recording_id in labels.recordings else None,
        "segments": row.segments if row.viewing else ([seq] if isinstance(seq, int) else []),
        "views": len(row.entries) if row.viewing else 0,
        "details": labels.details(newest.details),
    }


async def admin_view(
    db: Database, principal: Principal, wanted: AuditFilter, *, limit: int | None
) -> tuple[list[Entry], list[str], list[Any]]:
    """The tenant's log for an admin: matching entries, every action name, every person."""
    return await _for_admin(db, principal, lambda scope: search(scope, wanted, limit=limit))
