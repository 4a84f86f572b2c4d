"""The signed-in pages: start page, an employee's day, the player, receipts, the audit log.

Each handler gets the verified principal from the route table's guard, calls the service
that authorizes through `broker.recordings.access`, and renders.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from aiohttp import web

from broker.audit import query as audit_query
from broker.audit.log import Head
from broker.auth.tokens import Principal
from broker.db.schema import users
from broker.db.scope import TenantScope
from broker.errors import InvalidInput
from broker.recordings import timeline
from broker.web.appkeys import CLOCK, DATABASE, SESSIONS, VIEWING
from broker.web.pages import storage_origin
from broker.web.pages.html import Markup, join, nav, page, render, when

DAY_WIDTH = 1440  # the day bar's SVG width: one unit per minute


async def _top(request: web.Request, principal: Principal) -> Markup:
    email = await _email(request, principal)
    left = principal.expires_at - int(request.app[CLOCK]().timestamp())
    return nav(
        principal, request.app[SESSIONS].csrf_token(principal.session_id), email, max(0, left)
    )


async def _email(request: web.Request, principal: Principal) -> str:
    async with request.app[DATABASE].transaction() as conn:
        row = await TenantScope(conn, principal.tenant_id).one(
            users, users.c.id == principal.user_id
        )
    return row.email if row else ""


async def home(request: web.Request, principal: Principal) -> web.Response:
    top = await _top(request, principal)
    if principal.role == "employee":
        body = render(
            "<p>Your workstation's recordings are watched only by the managers assigned to you "
            "and by your organisation's admins. Every view is recorded, and you can see each "
            'one: <a href="/receipts">who viewed my recordings</a>.</p>'
        )
        return page("Welcome", body, top=top)
    people = await request.app[VIEWING].employees(principal)
    rows = join(
        render('<li><a href="/employees/{id}">{email}</a> <span class="role">{role}</span></li>',
               id=p["user_id"], email=p["email"], role=p["role"])
        for p in people
    )
    empty = render('<p class="empty">Nobody is assigned to you yet.</p>')
    body = render('<ul class="people">{rows}</ul>', rows=rows) if people else empty
    return page("People", body, top=top)


def _parse_day(raw: str | None) -> date | None:
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise InvalidInput("day must be YYYY-MM-DD") from None


def _x(moment: datetime, day: date) -> float:
    start = datetime(day.year, day.month, day.day, tzinfo=moment.tzinfo)
    return round((moment - start).total_seconds() / 60, 2)


def _day_bar(day: timeline.Day) -> Markup:
    rects = [
        render('<rect class="rec" x="{x}" y="0" width="{w}" height="30"><title>{t}</title></rect>',
               x=_x(s.start, day.day), w=max(_x(s.end, day.day) - _x(s.start, day.day), 1),
               t=f"recorded {when(s.start)} – {when(s.end)}")
        for s in day.spans
    ]
    rects += [
        render('<rect class="gap" x="{x}" y="0" width="{w}" height="30"><title>{t}</title></rect>',
               x=_x(a, day.day), w=_x(b, day.day) - _x(a, day.day),
               t=f"no recording {when(a)} – {when(b)}")
        for a, b in day.gaps
    ]
    ticks = join(
        render('<text x="{x}" y="44" class="tick">{h}</text>', x=h * 60, h=str(h).zfill(2))
        for h in range(0, 24, 3)
    )
    return render(
        '<svg class="day" viewBox="0 0 {w} 48" preserveAspectRatio="none" role="img" '
        'aria-label="recorded time and gaps over the day">'
        '<rect class="bg" x="0" y="0" width="{w}" height="30"/>{rects}{ticks}</svg>',
        w=DAY_WIDTH, rects=join(rects), ticks=ticks,
    )


async def employee_day(request: web.Request, principal: Principal) -> web.Response:
    wanted = _parse_day(request.query.get("day"))
    day = await timeline.day_of(
        request.app[DATABASE], principal, request.match_info["user_id"], wanted
    )
    days = join(
        render('<li><a href="?day={d}" {cur}>{d}</a></li>', d=d.isoformat(),
               cur=Markup('aria-current="date"') if d == day.day else Markup(""))
        for d in day.days
    )
    recs = join(
        render(
            "<tr><td>{start}</td><td>{end}</td><td>{segments}</td><td>{state}</td>"
            '<td><a href="/recordings/{id}">Play</a></td></tr>',
            start=when(r["started_at"]), end=when(r["finished_at"]), segments=r["segments"],
            state=r["state"], id=r["recording_id"],
        )
        for r in day.recordings
    )
    gaps = join(
        render("<li>{a} – {b} <span class=\"dur\">({m})</span></li>", a=when(a), b=when(b),
               m=_duration(b - a))
        for a, b in day.gaps
    )
    body = render(
        """<nav class="days"><h2>Days with recordings</h2><ul>{days}</ul></nav>
<section><h2>{day} <small>(times in UTC)</small></h2>{bar}
<table class="recordings"><thead><tr><th>Started</th><th>Finished</th><th>Segments</th>
<th>State</th><th></th></tr></thead><tbody>{recs}</tbody></table>
<h3>Gaps (no recording: idle, paused, locked or the agent silent)</h3>
<ul class="gaps">{gaps}</ul></section>""",
        days=days, day=day.day.isoformat(), bar=_day_bar(day), recs=recs,
        gaps=gaps or render("<li>none</li>"),
    )
    return page(day.email, body, top=await _top(request, principal))


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60} min" if hours else f"{rest // 60} min {rest % 60} s"


_PLAYER = """<section id="player" class="player" data-recording="{recording}" data-csrf="{csrf}">
<video id="video" muted playsinline preload="auto"></video>
<div class="controls">
<button id="play" type="button" aria-keyshortcuts="Space">Play</button>
<input id="seek" type="range" min="0" max="0" step="100" value="0"
 aria-label="Position in the recording">
<output id="clock" aria-live="off">—</output>
<label>Speed <select id="speed">{speeds}</select></label>
</div>
<p id="status" class="status" role="status"></p>
<p class="help">Keys: Space play/pause · ← → 5 s (Shift: 30 s) · 1–8 speed. Times in UTC.</p>
</section>
<p><a href="/employees/{user}">Back to the day view</a></p>
<h2>Segments</h2>
<ol id="segments" class="segments">{segments}</ol>"""


async def player(request: web.Request, principal: Principal) -> web.Response:
    recording_id = request.match_info["recording_id"]
    info = await request.app[VIEWING].recording(principal, recording_id)
    playable = [s for s in info.segments if s.state == "verified"]
    segments = join(
        render('<li data-seq="{seq}" data-start="{start}" data-duration-ms="{ms}">'
               "{start} · {sec} s</li>",
               seq=s.seq, start=s.started_at, ms=s.duration_ms, sec=round(s.duration_ms / 1000, 1))
        for s in playable
    )
    body = render(
        _PLAYER, recording=info.recording_id, user=info.user_id, segments=segments,
        csrf=request.app[SESSIONS].csrf_token(principal.session_id),
        speeds=join(render('<option value="{n}">{n}×</option>', n=n) for n in range(1, 9)),
    )
    async with request.app[DATABASE].transaction() as conn:
        origins = await storage_origin.media_origins(TenantScope(conn, principal.tenant_id))
    return page(
        f"Recording of {when(_started(info.started_at))}", body, top=await _top(request, principal),
        scripts=["player.js"], media_origins=origins,
    )


def _started(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def my_receipts(request: web.Request, principal: Principal) -> web.Response:
    found, head = await audit_query.receipts_and_head(
        request.app[DATABASE], principal, principal.user_id
    )
    rows = join(
        render("<tr><td>{at}</td><td>{who}</td><td>{role}</td><td>{rec}</td><td>{seq}</td></tr>",
               at=when(r.at), who=r.viewer, role=r.viewer_role, rec=r.recording_id, seq=r.seq)
        for r in found
    )
    body = render(
        "<p>Every time someone opened a part of your recordings, the broker wrote it to the "
        "tamper-evident audit log. This is that list, newest first (times in UTC).</p>"
        '<table class="receipts"><thead><tr><th>When</th><th>Who</th><th>Role</th>'
        "<th>Recording</th><th>Segment</th></tr></thead><tbody>{rows}</tbody></table>",
        rows=rows or render('<tr><td colspan="5">Nobody has viewed your recordings.</td></tr>'),
    )
    return page(
        "Who viewed my recordings", join([body, _chain_head(head)]),
        top=await _top(request, principal),
    )


def _chain_head(head: Head | None) -> Markup:
    """The head of the tenant's audit chain, for the person to note: a later visit showing
    a lower number means entries were removed from the end of the log."""
    if head is None:
        return render("<p>The audit log is empty.</p>")
    return render(
        '<p class="chain-head">The audit log now ends at entry <strong>{seq}</strong> '
        "(MAC <code>{mac}</code> under key {key}, chain hash <code>{digest}</code>). "
        "Note the number: it only ever grows, so if a later visit shows a smaller one, "
        "entries were removed from the log.</p>",
        seq=head.seq, mac=(head.mac or "none")[:16], key=head.mac_key or "none",
        digest=head.hash[:16],
    )


async def receipts_api(request: web.Request, principal: Principal) -> web.Response:
    found = await audit_query.receipts_for(
        request.app[DATABASE], principal, request.match_info["user_id"]
    )
    return web.json_response({
        "receipts": [
            {"at": r.at.isoformat(), "viewer": r.viewer, "viewer_role": r.viewer_role,
             "recording_id": r.recording_id, "seq": r.seq}
            for r in found
        ]
    })


def _filter(request: web.Request) -> audit_query.AuditFilter:
    q = request.query
    return audit_query.AuditFilter(
        actor=q.get("actor", "")[:200], action=q.get("action", "")[:64],
        employee=q.get("employee", "")[:64], day=_parse_day(q.get("day")),
    )


async def audit_page(request: web.Request, principal: Principal) -> web.Response:
    wanted = _filter(request)
    found, actions, people = await audit_query.admin_view(
        request.app[DATABASE], principal, wanted, limit=AUDIT_PAGE_ROWS
    )
    body = render(
        _AUDIT, rows=join(_audit_row(e) for e in found),
        actor=wanted.actor, day=wanted.day.isoformat() if wanted.day else "",
        actions=_options([("", "any action"), *((a, a) for a in actions)], wanted.action),
        people=_options([("", "anyone"), *((p.id, p.email) for p in people)], wanted.employee),
        export=f"/api/v1/admin/audit/export?{request.query_string}",
        limit=AUDIT_PAGE_ROWS,
    )
    return page("Audit log", body, top=await _top(request, principal))


AUDIT_PAGE_ROWS = 500

_AUDIT = """<form method="get" action="/audit" class="filters">
<label>Actor <input name="actor" value="{actor}"
 placeholder="email, user:…, device:…, operator"></label>
<label>Action <select name="action">{actions}</select></label>
<label>Employee <select name="employee">{people}</select></label>
<label>Day (UTC) <input name="day" type="date" value="{day}"></label>
<button type="submit">Filter</button>
<a class="button" href="{export}" download>Export as JSON lines</a>
</form>
<p class="help">Newest first, at most {limit} rows here; the export holds every match with the
chain's hashes. <code>bucketreel-broker admin audit-verify --tenant T</code> checks the chain.</p>
<table class="audit"><thead><tr><th>#</th><th>When (UTC)</th><th>Actor</th><th>Action</th>
<th>Target</th><th>Details</th></tr></thead><tbody>{rows}</tbody></table>"""


def _options(choices: list[tuple[str, str]], current: str) -> Markup:
    return join(
        render('<option value="{v}" {sel}>{label}</option>', v=v, label=label,
               sel=Markup("selected") if v == current else Markup(""))
        for v, label in choices
    )


def _audit_row(e: Any) -> Markup:
    return render(
        "<tr><td>{seq}</td><td>{at}</td><td>{actor}</td><td>{action}</td><td>{target}</td>"
        "<td><code>{details}</code></td></tr>",
        seq=e.seq, at=when(e.at), actor=e.actor, action=e.action, target=e.target,
        details=", ".join(f"{k}={v}" for k, v in sorted(e.details.items())),
    )


async def audit_export(request: web.Request, principal: Principal) -> web.StreamResponse:
    found, _, _ = await audit_query.admin_view(
        request.app[DATABASE], principal, _filter(request), limit=None
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

