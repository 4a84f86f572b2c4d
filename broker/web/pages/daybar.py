"""What the day page draws: the timeline's shapes, its words, and the month calendar.

The timeline is an SVG 1,000 units wide showing a window of the day (at first the recorded
hours, rounded out to whole hours); `day.js` moves and zooms that window and lays the same
shapes out again from their `data-start`/`data-end` (milliseconds since the epoch). Every
recorded span and every gap is a link (focusable, Enter follows it) to the day player at
that moment; a gap's link starts where recording resumes.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from broker.recordings import timeline
from broker.web.templating import when

WIDTH = 1000  # the SVG's user units across the window
MIN_WIDTH = 2.0  # a shape is drawn at least this wide (a 10 s gap at a whole day's scale)

# Why nothing was recorded, in a manager's words (`kind`: the first reason reported).
REASONS = {
    "idle": "idle",
    "locked": "screen locked",
    "capture_blocked": "screen capture blocked",
    "silent": "agent silent or offline (no reason reported)",
}
CAPTURE_LABELS = {
    "no_permission": "no permission",
    "wayland_session": "Wayland session",
    "display_blank": "display blank",
    "unknown": "no picture",
}
# Tick steps (seconds) by the window's length: the first whose window is at least as long.
TICKS = ((20 * 60, 60), (60 * 60, 5 * 60), (3 * 3600, 15 * 60), (8 * 3600, 3600))


def ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def gap_words(gap: timeline.Gap) -> str:
    words = [REASONS.get(r, r.replace("_", " ")) for r in gap.reasons] or [REASONS["silent"]]
    if gap.detail:
        words = [
            f"{w} ({CAPTURE_LABELS.get(gap.detail, gap.detail)})" if r == "capture_blocked" else w
            for r, w in zip(gap.reasons, words, strict=True)
        ]
    return ", ".join(words)


def duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    hours, rest = divmod(seconds, 3600)
    if hours:
        return f"{hours} h {rest // 60} min"
    return f"{rest // 60} min {rest % 60} s" if rest >= 60 else f"{rest} s"


def clock_text(moment: datetime) -> str:
    return when(moment)[11:]  # HH:MM:SS in the request's zone


def play_link(user_id: str, day: date, at: datetime) -> str:
    return f"/employees/{user_id}/play?" + urlencode({"day": day.isoformat(), "at": iso(at)})


def window(day: timeline.Day) -> tuple[datetime, datetime]:
    """The recorded hours, rounded out to whole hours of the zone (the whole day when
    nothing was recorded)."""
    if not day.spans:
        return day.start, day.end
    first = day.spans[0].start.astimezone(day.zone).replace(minute=0, second=0, microsecond=0)
    last = max(s.end for s in day.spans).astimezone(day.zone)
    end = last.replace(minute=0, second=0, microsecond=0)
    if end < last:
        end += timedelta(hours=1)
    return max(first.astimezone(UTC), day.start), min(end.astimezone(UTC), day.end)


def _tick_step(seconds: float) -> int:
    return next((step for longest, step in TICKS if seconds <= longest), 3 * 3600)


def bar(day: timeline.Day) -> dict[str, Any]:
    """The timeline's shapes laid out in its first window."""
    lo, hi = window(day)
    span = (hi - lo).total_seconds() or 1.0

    def x(moment: datetime) -> float:
        return round((moment - lo).total_seconds() / span * WIDTH, 2)

    def shape(
        start: datetime, end: datetime, kind: str, label: str, at: datetime
    ) -> dict[str, Any]:
        return {
            "kind": kind, "x": x(start), "width": max(x(end) - x(start), MIN_WIDTH),
            "start": ms(start), "end": ms(end), "label": label,
            "href": play_link(day.user_id, day.day, at),
        }

    shapes = []  # the gaps first, so that a recorded span is drawn over a gap's minimum width
    for g in day.explained_gaps():
        shapes.append(shape(
            g.start, g.end, f"gap {g.kind}",
            f"no recording {clock_text(g.start)} – {clock_text(g.end)} "
            f"({duration(g.end - g.start)}): {gap_words(g)}; play from {clock_text(g.end)}",
            g.end,
        ))
    shapes += [
        shape(s.start, s.end, "rec", f"recorded {clock_text(s.start)} – {clock_text(s.end)} "
              f"({duration(s.end - s.start)}): play from {clock_text(s.start)}", s.start)
        for s in day.spans
    ]
    step = _tick_step(span)
    first = lo.astimezone(day.zone)
    midnight = first.replace(hour=0, minute=0, second=0, microsecond=0)
    # Ticks on the zone's wall clock (a step divides an hour or three): count from its
    # midnight, then step in UTC (an hour skipped or repeated shifts no later tick's label).
    since = (first - midnight).total_seconds()
    at = lo + timedelta(seconds=(-since) % step)
    ticks = []
    while at <= hi:
        ticks.append({"x": x(at), "label": at.astimezone(day.zone).strftime("%H:%M")})
        at += timedelta(seconds=step)
    return {
        "width": WIDTH, "shapes": shapes, "ticks": ticks, "window": (ms(lo), ms(hi)),
        "day": (ms(day.start), ms(day.end)), "recorded": (ms(lo), ms(hi)),
    }


def month(day: timeline.Day) -> dict[str, Any]:
    """The chosen day's month as weeks of days (Monday first), those with recordings
    linked, and the nearest recorded days of the months before and after."""
    recorded = set(day.days)
    weeks = [  # days as numbers (0: another month's), so December 9999 has no overflow
        [
            {"day": n, "iso": (d := day.day.replace(day=n)).isoformat(),
             "recorded": d in recorded, "current": d == day.day}
            if n else None
            for n in week
        ]
        for week in calendar.Calendar(calendar.MONDAY).monthdayscalendar(
            day.day.year, day.day.month
        )
    ]
    first = day.day.replace(day=1)
    earlier = [d for d in day.days if d < first]
    later = [d for d in day.days if (d.year, d.month) > (day.day.year, day.day.month)]
    return {
        "name": day.day.strftime("%B %Y"), "weeks": weeks,
        "weekdays": ["Mo", "Tu", "We", "Th", "Fr", "Sa", "Su"],
        "before": max(earlier).isoformat() if earlier else None,
        "after": min(later).isoformat() if later else None,
    }
