"""Reading the audit log: view receipts for one person, and filtered searches for admins.

Receipts are the log's `segment.view_url` entries for the person's recordings: who minted a
view URL, when, for which recording and segment. They come from the hash-chained log itself,
so nothing is kept twice and nothing can be shown that the chain does not hold.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from typing import Any

from sqlalchemy import ColumnElement

from broker import access
from broker.audit.log import Entry, Head, head
from broker.clock import day_bounds
from broker.db.database import Database
from broker.db.schema import audit_log, recordings, users
from broker.db.scope import TenantScope
from broker.errors import Forbidden
from broker.identity import Principal

VIEW_ACTION = "segment.view_url"
MAX_ROWS = 1000


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
    employee: str = ""  # a user id: entries about that person or their recordings
    day: date | None = None
    zone: tzinfo = UTC  # the day is cut in it


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


async def receipts(scope: TenantScope, user_id: str) -> list[Receipt]:
    """Every view URL minted for this person's recordings, newest first. The caller has
    authorized the read (`broker.access.require_receipts`)."""
    theirs = {r.id for r in await scope.all(recordings, recordings.c.user_id == user_id)}
    people = await _people(scope)
    rows = await scope.all(
        audit_log, audit_log.c.action == VIEW_ACTION, order_by=[audit_log.c.seq.desc()]
    )
    found = []
    for r in rows:
        details = json.loads(r.details)
        if details.get("recording") not in theirs:
            continue
        who, role = actor_label(r.actor, people)
        found.append(
            Receipt(at=r.at, viewer=who, viewer_role=role, recording_id=details["recording"],
                    seq=int(details.get("seq", 0)), own=r.actor == f"user:{user_id}")
        )
    return found


async def receipts_and_head(
    db: Database, principal: Principal, user_id: str
) -> tuple[list[Receipt], Head | None]:
    """A person's view receipts and, read in the same transaction, the head of the tenant's
    chain (seq, hash, MAC): shown beside the receipts, so that entries removed from the end
    of the log show as a lower number on a later visit."""
    async with db.transaction() as conn:
        scope = TenantScope(conn, principal.tenant_id)
        await access.require_receipts(scope, principal, user_id)
        return await receipts(scope, user_id), await head(scope)


async def actions(scope: TenantScope) -> list[str]:
    return sorted({r.action for r in await scope.all(audit_log)})


async def search(scope: TenantScope, wanted: AuditFilter, *, limit: int | None) -> list[Entry]:
    """Entries matching every given filter, newest first (at most `limit`)."""
    criteria: list[ColumnElement[bool]] = []
    if wanted.action:
        criteria.append(audit_log.c.action == wanted.action)
    if wanted.day is not None:
        start, end = day_bounds(wanted.day, wanted.zone)
        criteria += [audit_log.c.at >= start, audit_log.c.at < end]
    rows = await scope.all(audit_log, *criteria, order_by=[audit_log.c.seq.desc()])
    people = await _people(scope)
    about: set[str] = set()
    if wanted.employee:
        about = {wanted.employee} | {
            r.id for r in await scope.all(recordings, recordings.c.user_id == wanted.employee)
        }
    found: list[Entry] = []
    for r in rows:
        if wanted.actor and not _actor_matches(r.actor, wanted.actor, people):
            continue
        if about and not _mentions(r, about):
            continue
        found.append(_entry(r))
        if limit is not None and len(found) >= limit:
            break
    return found


def _actor_matches(actor: str, wanted: str, people: dict[str, Any]) -> bool:
    who, _ = actor_label(actor, people)
    needle = wanted.lower()
    return needle in actor.lower() or needle in who.lower()


def _mentions(row: Any, ids: set[str]) -> bool:
    text = f"{row.actor} {row.target} {row.details}"
    return any(i in text for i in ids)


def json_lines(entries: Iterable[Entry]) -> Iterable[str]:
    """The export format: one JSON object per line, with the chain's hashes, oldest first."""
    for e in sorted(entries, key=lambda e: e.seq):
        yield json.dumps(
            {
                "seq": e.seq, "at": e.at.isoformat(), "actor": e.actor, "action": e.action,
                "target": e.target, "details": e.details, "prev_hash": e.prev_hash,
                "hash": e.hash, "mac": e.mac, "mac_key": e.mac_key,
            },
            sort_keys=True,
        ) + "\n"


async def receipts_for(db: Database, principal: Principal, user_id: str) -> list[Receipt]:
    """A person's view receipts, for whoever `access.require_receipts` lets read them."""
    async with db.transaction() as conn:
        scope = TenantScope(conn, principal.tenant_id)
        await access.require_receipts(scope, principal, user_id)
        return await receipts(scope, user_id)


async def admin_view(
    db: Database, principal: Principal, wanted: AuditFilter, *, limit: int | None
) -> tuple[list[Entry], list[str], list[Any]]:
    """The tenant's log for an admin: matching entries, every action name, every person."""
    if principal.kind != "user" or principal.role != "admin":
        raise Forbidden("only an admin reads the audit log")
    async with db.transaction() as conn:
        scope = TenantScope(conn, principal.tenant_id)
        found = await search(scope, wanted, limit=limit)
        people = await scope.all(users, order_by=[users.c.email])
        return found, await actions(scope), people
