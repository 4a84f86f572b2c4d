"""A person's day: the day page (timeline, calendar, gaps), its API route, the day player.

All three read `broker.recordings.timeline.day_of`, which authorizes through
`broker.access`; the day player's script reads the API route (and polls it while a
recording is live), so the page, the player and the tests see the same data.
"""

from __future__ import annotations

from datetime import date, tzinfo
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from broker.errors import InvalidInput
from broker.identity import Principal
from broker.recordings import bounds, timeline
from broker.web.appkeys import SERVICES
from broker.web.http import reply, shape
from broker.web.pages import daybar, zone
from broker.web.pages.html import page, top_bar
from broker.web.templating import current_zone, use_zone, zone_name
from shared.api import EmployeeDay
from shared.wire import format_timestamp


async def _day(request: web.Request, principal: Principal, wanted: date | None) -> timeline.Day:
    return await timeline.day_of(
        request.app[SERVICES].db, principal, request.match_info["user_id"], wanted,
        zone=current_zone(),
    )


async def employee_day(request: web.Request, principal: Principal) -> web.Response:
    wanted = bounds.parse_day(request.query.get("day"))
    top = await top_bar(request, principal)
    day = await _day(request, principal, wanted)
    gaps = day.explained_gaps()
    return page(
        request, "employee_day.html", title=day.email, top=top, scripts=["day.js"],
        user=day.user_id, day=day.day.isoformat(), bar=daybar.bar(day), month=daybar.month(day),
        play=daybar.play_link(day.user_id, day.day, day.spans[0].start) if day.spans else None,
        reasons=daybar.REASONS,
        recordings=[
            {"start": r["started_at"], "end": r["finished_at"],
             "segments": r["segments"], "state": r["state"], "id": r["recording_id"],
             "play": daybar.play_link(day.user_id, day.day, max(r["started_at"], day.start))}
            for r in day.recordings
        ],
        gaps=[
            {"start": g.start, "end": g.end, "duration": daybar.duration(g.end - g.start),
             "why": daybar.gap_words(g), "kind": g.kind,
             "play": daybar.play_link(day.user_id, day.day, g.end)}
            for g in gaps
        ],
        blocked=[
            {"device": b.name,
             "reason": daybar.CAPTURE_LABELS.get(b.capture.reason or "unknown", "no picture"),
             "since": b.capture.since}
            for b in day.blocked
        ],
    )


def _api_zone(request: web.Request, tenant_zone: str | None) -> tzinfo:
    """`?zone=` (an IANA name) when given, else the zone the pages use for this caller."""
    asked = request.query.get("zone")
    if asked:
        chosen = zone.parse_zone(asked)
        if chosen is None:
            raise InvalidInput("zone must be an IANA time zone name, such as Europe/Berlin")
        use_zone(chosen, "asked")
        return chosen
    return zone.resolve(request, tenant_zone)


async def day_api(request: web.Request, principal: Principal) -> web.Response:
    wanted = bounds.parse_day(request.match_info["day"])
    _api_zone(request, await request.app[SERVICES].viewing.tenant_zone(principal))
    day = await _day(request, principal, wanted)
    return reply(shape(EmployeeDay, day_data(day)))


def day_data(day: timeline.Day) -> dict[str, Any]:
    stamp = format_timestamp
    by_recording: dict[str, list[dict[str, Any]]] = {}
    for s in day.playable:
        by_recording.setdefault(s.recording_id, []).append(
            {"seq": s.seq, "started_at": stamp(s.start), "duration_ms": s.duration_ms,
             "codec": s.codec}
        )
    return {
        "user_id": day.user_id, "email": day.email, "day": day.day.isoformat(),
        "zone": zone_name(day.zone), "start": stamp(day.start), "end": stamp(day.end),
        "live": day.live, "days": [d.isoformat() for d in day.days],
        "spans": [
            {"start": stamp(s.start), "end": stamp(s.end), "recording_id": s.recording_id}
            for s in day.spans
        ],
        "gaps": [
            {"start": stamp(g.start), "end": stamp(g.end), "kind": g.kind,
             "reasons": list(g.reasons), "detail": g.detail, "label": daybar.gap_words(g)}
            for g in day.explained_gaps()
        ],
        "recordings": [
            {"recording_id": r["recording_id"], "state": r["state"],
             "started_at": stamp(r["started_at"]),
             "finished_at": stamp(r["finished_at"]) if r["finished_at"] else None,
             "segments": by_recording.get(r["recording_id"], [])}
            for r in day.recordings
        ],
    }


async def day_player(request: web.Request, principal: Principal) -> web.Response:
    """One player for the whole day (`?day=`, from `?at=`, an RFC 3339 time)."""
    wanted = bounds.parse_day(request.query.get("day"))
    at = request.query.get("at", "")
    if len(at) > 64 or "\x00" in at:
        raise InvalidInput("at must be an RFC 3339 time")
    top = await top_bar(request, principal)
    day = await _day(request, principal, wanted)
    origins = await request.app[SERVICES].storage.media_origins(principal.tenant_id)
    iso_day = day.day.isoformat()
    return page(
        request, "day_player.html", title=f"{day.email} · {iso_day}", top=top,
        scripts=["viewer.js", "day-player.js"], media_origins=origins,
        user=day.user_id, day=iso_day, at=at,
        api=f"/api/v1/employees/{day.user_id}/days/{iso_day}?"
        + urlencode({"zone": zone_name()}),
        csrf=request.app[SERVICES].sessions.csrf_token(principal.session_id),
        speeds=range(1, 9), live=day.live,
        gaps=[
            {"start": g.start, "end": g.end, "duration": daybar.duration(g.end - g.start),
             "why": daybar.gap_words(g), "kind": g.kind}
            for g in day.explained_gaps()
        ],
    )
