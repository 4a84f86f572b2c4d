"""Accountability pages: the admin's audit log (`/audit`, its API `GET /api/v1/admin/audit`
and the export) and a person's receipts (`/receipts`, `GET /api/v1/employees/{id}/receipts`).

Both show names and links instead of ids and object keys, and a viewing of several segments
as one row (`broker.audit.viewings`). The audit log is read page by page (`?before=`, an
entry number: the "older" link), filtered by actor, action, person and period (`from`, `to`:
days cut in the viewer's zone); the export keeps every raw entry with the chain's hashes.
"""

from __future__ import annotations

from datetime import UTC, date, tzinfo
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from broker.audit import query as audit_query
from broker.audit.log import Head
from broker.errors import InvalidInput
from broker.identity import Principal
from broker.recordings import bounds
from broker.web.appkeys import SERVICES
from broker.web.http import reply, shape
from broker.web.pages import zone
from broker.web.pages.html import page, top_bar
from broker.web.pages.overview import viewing_rows, viewings
from broker.web.templating import current_zone
from shared.api import AuditPage, Receipts

AUDIT_PAGE_ROWS = 100
FILTERS = ("actor", "action", "employee", "day", "from", "to", "zone", "before")


def _filter(request: web.Request, zone: tzinfo, *, paged: bool) -> audit_query.AuditFilter:
    q = request.query
    for name in FILTERS:
        if "\x00" in q.get(name, ""):  # no row holds one, and PostgreSQL cannot compare it
            raise InvalidInput(f"{name} must not contain NUL characters")
    before = None
    if paged and q.get("before"):
        try:
            before = int(q["before"])
        except ValueError:
            raise InvalidInput("before must be an entry number") from None
    return audit_query.AuditFilter(
        actor=q.get("actor", "")[:200], action=q.get("action", "")[:64],
        employee=q.get("employee", "")[:64], day=bounds.parse_day(q.get("day")),
        start=bounds.parse_day(q.get("from"), "from"), end=bounds.parse_day(q.get("to"), "to"),
        zone=zone,
        before=before if paged else None,
    )


async def _page(request: web.Request, principal: Principal, chosen: tzinfo) -> Any:
    return await audit_query.admin_page(
        request.app[SERVICES].db, principal, _filter(request, chosen, paged=True),
        rows=AUDIT_PAGE_ROWS,
    )


async def audit_page(request: web.Request, principal: Principal) -> web.Response:
    top = await top_bar(request, principal)
    wanted = _filter(request, current_zone(), paged=True)
    found, actions, people = await _page(request, principal, current_zone())
    kept = {k: v for k, v in request.query.items() if k in FILTERS and k != "before" and v}
    export = urlencode({**kept, "zone": zone.zone_name(current_zone())})
    rows = [
        {**audit_query.described(r, found.labels), "when": r.newest.at, "since": r.oldest.at}
        for r in found.rows
    ]
    return page(
        request, "audit.html", title="Audit log", top=top, rows=rows, actor=wanted.actor,
        start=_iso(wanted.start), end=_iso(wanted.end),
        actions=[("", "any action"), *((a, a) for a in actions)], action=wanted.action,
        people=[("", "anyone"), *((p.id, _name(p)) for p in people)], employee=wanted.employee,
        export=f"/api/v1/admin/audit/export?{export}", limit=AUDIT_PAGE_ROWS,
        older=f"/audit?{urlencode({**kept, 'before': found.older})}" if found.older else None,
        newest=f"/audit?{urlencode(kept)}" if wanted.before is not None else None,
    )


def _iso(day: date | None) -> str:
    return day.isoformat() if day else ""


def _name(row: Any) -> str:
    return f"{row.display_name} ({row.email})" if row.display_name else str(row.email)


async def audit_api(request: web.Request, principal: Principal) -> web.Response:
    tenant_zone = await request.app[SERVICES].viewing.tenant_zone(principal)
    found, _, _ = await _page(request, principal, zone.api_zone(request, tenant_zone))
    return reply(shape(AuditPage, {
        "rows": [audit_query.described(r, found.labels) for r in found.rows],
        "older": found.older, "page_size": AUDIT_PAGE_ROWS,
    }))


async def my_receipts(request: web.Request, principal: Principal) -> web.Response:
    found, head = await audit_query.receipts_and_head(
        request.app[SERVICES].db, principal, principal.user_id
    )
    return page(
        request, "receipts.html", title="Who viewed my recordings",
        top=await top_bar(request, principal), viewings=viewing_rows(found),
        views=len(found.receipts), head=_chain_head(head),
    )


def _chain_head(head: Head | None) -> dict[str, Any] | None:
    """The head of the tenant's audit chain, for the person to note: a later visit showing
    a lower number means entries were removed from the end of the log."""
    if head is None:
        return None
    return {
        "seq": head.seq, "mac": (head.mac or "none")[:16], "key": head.mac_key or "none",
        "digest": head.hash[:16],
    }


async def receipts_api(request: web.Request, principal: Principal) -> web.Response:
    found = await audit_query.receipts_for(
        request.app[SERVICES].db, principal, request.match_info["user_id"]
    )
    return reply(shape(Receipts, {
        "receipts": [
            {"at": r.at.isoformat(), "viewer": r.viewer, "viewer_role": r.viewer_role,
             "recording_id": r.recording_id, "seq": r.seq, "own": r.own}
            for r in found.receipts
        ],
        "viewings": viewings(found),
    }))


async def audit_export(request: web.Request, principal: Principal) -> web.StreamResponse:
    # `?day=` (or `?from=`, `?to=`) is cut in `?zone=` (an IANA name), else in the tenant's
    # zone, else in UTC.
    chosen = zone.asked(request)
    if chosen is None:
        chosen = zone.parse_zone(await request.app[SERVICES].viewing.tenant_zone(principal))
    found, _, _ = await audit_query.admin_view(
        request.app[SERVICES].db, principal, _filter(request, chosen or UTC, paged=False),
        limit=None,
    )
    response = web.StreamResponse(headers={
        "Content-Type": "application/x-ndjson; charset=utf-8",
        "Content-Disposition": 'attachment; filename="audit.jsonl"',
    })
    await response.prepare(request)
    for line in audit_query.json_lines(principal.tenant_id, found):
        await response.write(line.encode())
    await response.write_eof()
    return response

