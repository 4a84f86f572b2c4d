"""The signed-in pages: an employee's day and the player (the start page and the
transparency page: `overview`; receipts and the audit log: `audit`).

Each handler gets the verified principal from the route table's guard, calls the service
that authorizes through `broker.access`, and renders.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from aiohttp import web

from broker.clock import local_hours
from broker.identity import Principal
from broker.recordings import bounds, timeline
from broker.web.appkeys import SERVICES
from broker.web.pages.html import page, top_bar, when
from broker.web.templating import current_zone

# What each reason the agent reports for a pause means, for a manager.
PAUSE_LABELS = {
    "idle": "idle",
    "locked": "screen locked",
    "capture_blocked": "screen capture blocked",
}
CAPTURE_LABELS = {
    "no_permission": "no permission",
    "wayland_session": "Wayland session",
    "display_blank": "display blank",
    "unknown": "no picture",
}


__all__ = ["top_bar"]  # one top bar for every page (`html.top_bar`), for the admin pages too


FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(9998, 12, 31)


def _parse_day(raw: str | None) -> date | None:
    return bounds.parse_day(raw)


def _x(moment: datetime, start: datetime) -> float:
    return round((moment - start).total_seconds() / 60, 2)


def _day_bar(day: timeline.Day) -> dict[str, Any]:
    """The day bar's shapes: recorded spans, gaps and the hour ticks, in minutes from the
    day's start in its zone (a day is 1,440 minutes wide, 1,380 or 1,500 when the clocks
    change)."""
    start, end = day.start, day.end
    rects = [
        {"kind": "rec", "x": _x(s.start, start),
         "width": max(_x(s.end, start) - _x(s.start, start), 1),
         "title": f"recorded {when(s.start)} – {when(s.end)}"}
        for s in day.spans
    ]
    rects += [
        {"kind": "gap", "x": _x(a, start), "width": _x(b, start) - _x(a, start),
         "title": f"no recording {when(a)} – {when(b)}"}
        for a, b in day.gaps
    ]
    ticks = [
        {"x": _x(at, start), "label": str(hour).zfill(2)}
        for hour, at in local_hours(day.day, day.zone) if hour % 3 == 0
    ]
    return {"width": _x(end, start), "rects": rects, "ticks": ticks}


async def employee_day(request: web.Request, principal: Principal) -> web.Response:
    wanted = _parse_day(request.query.get("day"))
    top = await top_bar(request, principal)
    day = await timeline.day_of(
        request.app[SERVICES].db, principal, request.match_info["user_id"], wanted,
        zone=current_zone(),
    )
    return page(
        request, "employee_day.html", title=day.email, top=top,
        day=day.day.isoformat(), bar=_day_bar(day),
        days=[{"iso": d.isoformat(), "current": d == day.day} for d in day.days],
        recordings=[
            {"start": r["started_at"], "end": r["finished_at"],
             "segments": r["segments"], "state": r["state"], "id": r["recording_id"]}
            for r in day.recordings
        ],
        gaps=_gaps(day),
        blocked=[
            {"device": b.name,
             "reason": CAPTURE_LABELS.get(b.capture.reason or "unknown", "no picture"),
             "since": b.capture.since}
            for b in day.blocked
        ],
    )


def _gaps(day: timeline.Day) -> list[dict[str, Any]]:
    """The gaps between recorded spans, each with the reasons the agent reported for it, and
    the reported pauses no such gap covers (one that lasts, or ended the recording)."""
    ranges = [(a, b, timeline.reasons_within(a, b, day.pauses)) for a, b in day.gaps]
    ranges += [
        (p.start, p.end, [p.reason])
        for p in day.pauses
        if not any(p.start < b and p.end > a for a, b in day.gaps)
    ]
    return [
        {"start": a, "end": b, "duration": _duration(b - a),
         "why": ", ".join(PAUSE_LABELS.get(r, r) for r in reasons)}
        for a, b, reasons in sorted(ranges, key=lambda g: g[0])
    ]


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60} min" if hours else f"{rest // 60} min {rest % 60} s"


async def player(request: web.Request, principal: Principal) -> web.Response:
    recording_id = request.match_info["recording_id"]
    top = await top_bar(request, principal)
    info = await request.app[SERVICES].viewing.recording(principal, recording_id)
    origins = await request.app[SERVICES].storage.media_origins(principal.tenant_id)
    return page(
        request, "player.html", title=f"Recording of {when(_started(info.started_at))}",
        top=top, scripts=["player.js"], media_origins=origins,
        recording=info.recording_id, user=info.user_id,
        csrf=request.app[SERVICES].sessions.csrf_token(principal.session_id), speeds=range(1, 9),
        segments=[
            {"seq": s.seq, "start": s.started_at, "duration_ms": s.duration_ms,
             "seconds": round(s.duration_ms / 1000, 1)}
            for s in info.segments if s.state == "verified"
        ],
    )


def _started(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
