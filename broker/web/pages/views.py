"""The signed-in pages: an employee's day and the player (the start page and the
transparency page: `overview`; receipts and the audit log: `audit`).

Each handler gets the verified principal from the route table's guard, calls the service
that authorizes through `broker.access`, and renders.
"""

from __future__ import annotations

from datetime import date, datetime

from aiohttp import web

from broker.identity import Principal
from broker.recordings import bounds
from broker.web.appkeys import SERVICES
from broker.web.pages.html import page, top_bar, when
from broker.web.templating import current_zone

__all__ = ["top_bar"]  # one top bar for every page (`html.top_bar`), for the admin pages too


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
            {"seq": s.seq, "start": s.started_at, "at": _started(s.started_at),
             "duration_ms": s.duration_ms,
             "seconds": round(s.duration_ms / 1000, 1), "codec": s.codec or ""}
            for s in info.segments if s.state == "verified"
        ],
    )


def _started(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
