"""The signed-in pages: start page, an employee's day, the player, receipts, the audit log.

Each handler gets the verified principal from the route table's guard, calls the service
that authorizes through `broker.access`, and renders.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, tzinfo
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
from broker.web.pages.html import page, top_bar, when
from broker.web.templating import current_zone
from shared.api import Receipts

__all__ = ["top_bar"]  # one top bar for every page (`html.top_bar`), for the admin pages too


async def home(request: web.Request, principal: Principal) -> web.Response:
    top = await top_bar(request, principal)
    own = f"/employees/{principal.user_id}"
    if principal.role == "employee":
        return page(
            request, "home.html", title="Welcome", top=top, people=None, own=own, silent=None
        )
    people = await request.app[SERVICES].viewing.employees(principal)
    silent = None  # an admin's glance at the fleet: the devices gone silent
    if principal.role == "admin":
        silent = await request.app[SERVICES].devices.silent_devices(principal.tenant_id)
    return page(
        request, "home.html", title="People", top=top, people=people, own=own, silent=silent
    )


FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(9998, 12, 31)


def _parse_day(raw: str | None) -> date | None:
    return bounds.parse_day(raw)


async def player(request: web.Request, principal: Principal) -> web.Response:
    recording_id = request.match_info["recording_id"]
    top = await top_bar(request, principal)
    info = await request.app[SERVICES].viewing.recording(principal, recording_id)
    origins = await request.app[SERVICES].storage.media_origins(principal.tenant_id)
    return page(
        request, "player.html", title=f"Recording of {when(_started(info.started_at))}",
        top=top, scripts=["viewer.js", "player.js"], media_origins=origins,
        recording=info.recording_id, user=info.user_id,
        day=_started(info.started_at).astimezone(current_zone()).date().isoformat(),
        csrf=request.app[SERVICES].sessions.csrf_token(principal.session_id), speeds=range(1, 9),
        segments=[
            {"seq": s.seq, "start": s.started_at, "duration_ms": s.duration_ms,
             "seconds": round(s.duration_ms / 1000, 1)}
            for s in info.segments if s.state == "verified"
        ],
    )


def _started(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def my_receipts(request: web.Request, principal: Principal) -> web.Response:
    found, head = await audit_query.receipts_and_head(
        request.app[SERVICES].db, principal, principal.user_id
    )
    return page(
        request, "receipts.html", title="Who viewed my recordings",
        top=await top_bar(request, principal), receipts=found, head=_chain_head(head),
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
            for r in found
        ]
    }))


def _filter(request: web.Request, zone: tzinfo) -> audit_query.AuditFilter:
    q = request.query
    for name in ("actor", "action", "employee", "day", "zone"):
        if "\x00" in q.get(name, ""):  # no row holds one, and PostgreSQL cannot compare it
            raise InvalidInput(f"{name} must not contain NUL characters")
    return audit_query.AuditFilter(
        actor=q.get("actor", "")[:200], action=q.get("action", "")[:64],
        employee=q.get("employee", "")[:64], day=_parse_day(q.get("day")), zone=zone,
    )


async def audit_page(request: web.Request, principal: Principal) -> web.Response:
    top = await top_bar(request, principal)
    wanted = _filter(request, current_zone())
    found, actions, people = await audit_query.admin_view(
        request.app[SERVICES].db, principal, wanted, limit=AUDIT_PAGE_ROWS
    )
    export = urlencode({**request.query, "zone": zone.zone_name(current_zone())})
    return page(
        request, "audit.html", title="Audit log", top=top,
        entries=found, actor=wanted.actor, day=wanted.day.isoformat() if wanted.day else "",
        actions=[("", "any action"), *((a, a) for a in actions)], action=wanted.action,
        people=[("", "anyone"), *((p.id, p.email) for p in people)], employee=wanted.employee,
        export=f"/api/v1/admin/audit/export?{export}", limit=AUDIT_PAGE_ROWS,
    )


AUDIT_PAGE_ROWS = 500


async def audit_export(request: web.Request, principal: Principal) -> web.StreamResponse:
    # `?day=` is cut in `?zone=` (an IANA name), else in the tenant's zone, else in UTC.
    asked = request.query.get("zone")
    chosen = zone.parse_zone(asked)
    if asked and chosen is None:
        raise InvalidInput("zone must be an IANA time zone name, such as Europe/Berlin")
    if chosen is None:
        chosen = zone.parse_zone(await request.app[SERVICES].viewing.tenant_zone(principal))
    found, _, _ = await audit_query.admin_view(
        request.app[SERVICES].db, principal, _filter(request, chosen or UTC), limit=None
    )
    response = web.StreamResponse(headers={
        "Content-Type": "application/x-ndjson; charset=utf-8",
        "Content-Disposition": 'attachment; filename="audit.jsonl"',
    })
    await response.prepare(request)
    for line in audit_query.json_lines(found):
        await response.write(line.encode())
    await response.write_eof()
    return response

