"""The start page (`/`: the people the viewer may watch, with what they do now and the time
recorded today) and the person's transparency page (`/me`), and their API routes
(`GET /api/v1/overview`, `GET /api/v1/me`), from the same services.

Days are cut, and times shown, in the page's zone (`broker.web.pages.zone`); the API takes
`?zone=` (an IANA name) and otherwise the same zone as the pages.
"""

from __future__ import annotations

from datetime import tzinfo
from typing import Any

from aiohttp import web

from broker.audit.query import Receipts
from broker.identity import Principal
from broker.web.appkeys import SERVICES
from broker.web.http import reply, shape
from broker.web.pages import zone
from broker.web.pages.html import page, top_bar
from broker.web.templating import current_zone
from shared.api import Overview, Transparency
from shared.wire import parse_timestamp

PAUSES = {"idle": "idle", "locked": "screen locked", "capture_blocked": "capture blocked"}
STATES = {
    "recording": "recording now",
    "capture_blocked": "capture blocked",
    "starting": "starting",
    "stopped": "not recording (agent stopped)",
    "enrolled": "enrolled, not heard from yet",
    "no_device": "no workstation",
    "revoked": "revoked",
    "unknown": "unknown",
}


def duration(seconds: float) -> str:
    """Recorded time in words: "2 h 05 min", "12 min 30 s", "nothing yet"."""
    whole = int(seconds)
    if whole <= 0:
        return "nothing yet" if seconds <= 0 else "under a second"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def shown(state: str, reason: str | None) -> str:
    """A state in words ("silent since …" takes its time beside it, in the template)."""
    if state == "paused":
        return f"paused ({PAUSES.get(reason or '', reason or 'paused')})"
    if state == "silent":
        return "silent since"
    return STATES.get(state, state)


def _device(d: dict[str, Any]) -> dict[str, Any]:
    return {
        **d, "label": shown(d["state"], d["paused_reason"]),
        "seen": parse_timestamp(d["last_seen_at"]) if d["last_seen_at"] else None,
        "since": parse_timestamp(d["silent_since"]) if d["silent_since"] else None,
        "label_state": "capture_blocked" if d["capture_blocked"] else d["state"],
    }


def person(p: dict[str, Any]) -> dict[str, Any]:
    """A person as the pages show them: their state and recorded time in words."""
    return {
        **p, "label": shown(p["state"], p["paused_reason"]),
        "since": parse_timestamp(p["silent_since"]) if p["silent_since"] else None,
        "recorded": duration(p["recorded_seconds"]),
        "devices": [_device(d) for d in p["devices"]],
    }


async def _api_zone(request: web.Request, principal: Principal) -> tzinfo:
    return zone.api_zone(request, await request.app[SERVICES].viewing.tenant_zone(principal))


async def home(request: web.Request, principal: Principal) -> web.Response:
    top = await top_bar(request, principal)
    services = request.app[SERVICES]
    now = await services.viewing.overview(principal, current_zone())
    silent = None  # an admin's glance at the fleet: the devices gone silent
    if principal.role == "admin":
        silent = await services.devices.silent_devices(principal.tenant_id)
    employee = principal.role == "employee"
    return page(
        request, "home.html", title="Welcome" if employee else "People", top=top,
        me=person(now["me"]), people=None if employee else [person(p) for p in now["people"]],
        own=f"/employees/{principal.user_id}", silent=silent,
    )


async def overview_api(request: web.Request, principal: Principal) -> web.Response:
    now = await request.app[SERVICES].viewing.overview(
        principal, await _api_zone(request, principal)
    )
    return reply(shape(Overview, now))


def viewings(receipts: Receipts) -> list[dict[str, Any]]:
    """The receipts' viewings as `shared.api.Viewing` shows them."""
    return [receipts.viewing(r) for r in receipts.viewings]


def viewing_rows(receipts: Receipts) -> list[dict[str, Any]]:
    """The viewings as the pages show them: times, who, which recording and segments."""
    rows = []
    for v in viewings(receipts):
        rows.append({
            **v, "first": parse_timestamp(v["first_at"]), "last": parse_timestamp(v["last_at"]),
            "who": (f"{v['viewer_name']} ({v['viewer']})" if v["viewer_name"] else v["viewer"]),
            "started": getattr(receipts.labels.recordings.get(v["recording_id"]),
                               "started_at", None),
        })
    return rows


async def me_page(request: web.Request, principal: Principal) -> web.Response:
    top = await top_bar(request, principal)
    found, receipts = await request.app[SERVICES].viewing.transparency(principal, current_zone())
    described = found["policy"]
    return page(
        request, "me.html", title="What is recorded about me", top=top,
        me=person(found["me"]), managers=found["managers"], admins=found["admins"],
        policy=described, policy_changed=(
            parse_timestamp(described["updated_at"]) if described["updated_at"] else None
        ),
        timeline=found["timeline"], viewings=viewing_rows(receipts),
    )


async def me_api(request: web.Request, principal: Principal) -> web.Response:
    found, receipts = await request.app[SERVICES].viewing.transparency(
        principal, await _api_zone(request, principal)
    )
    return reply(shape(Transparency, {**found, "viewings": viewings(receipts)}))
