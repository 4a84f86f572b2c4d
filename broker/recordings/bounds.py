"""Bounds on every time an agent declares: recording start, segment start and end, gap range.

Why: the recorded employee controls the agent, and so every time it declares. One segment
declared at `9999-12-31T23:30:00Z` once made the oversight page fail for every day; a
recording "started" years away, or segments that overlap or run backwards, make the day view
say what did not happen. So the broker admits a declared time only within
`[the recording's start - skew, now + skew]` (a recording's own start within
`[now - skew, now + skew]`): the agent declares a time at most moments after it happened,
and clocks disagree by a little (`skew`, `BUCKETREEL_CLOCK_SKEW`, 5 minutes by default).
Segments follow their sequence numbers in time and do not overlap (up to
`OVERLAP_TOLERANCE`, frame rounding). Refused declarations are a 400 naming the field;
nothing is written.

Days a reader may ask for are bounded as well (`parse_day`): a day whose end cannot be
represented is refused with a 400 instead of failing deep in date arithmetic.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from broker.errors import InvalidInput

DEFAULT_CLOCK_SKEW = 300  # seconds
OVERLAP_TOLERANCE = timedelta(seconds=1)
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(9999, 12, 30)  # the last day whose end (the next midnight) exists


def _refused(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"{field}: {message}")


def _window(field: str, value: datetime, lo: datetime, hi: datetime) -> None:
    if not lo <= value <= hi:
        raise _refused(
            field,
            f"must be between {lo.isoformat()} and {hi.isoformat()} (the recording's start "
            "and the broker's clock, give or take the allowed clock skew)",
        )


def _shift(moment: datetime, delta: timedelta) -> datetime:
    """`moment + delta`, held at the calendar's ends (bad rows stored before these bounds
    existed may sit next to them)."""
    try:
        return moment + delta
    except OverflowError:
        edge = datetime.max if delta > timedelta(0) else datetime.min
        return edge.replace(tzinfo=moment.tzinfo)


def _earliest(recording_start: datetime, skew: timedelta) -> datetime:
    return _shift(recording_start, -skew)


def check_recording_start(started_at: datetime, *, now: datetime, skew: timedelta) -> None:
    _window("started_at", started_at, now - skew, now + skew)


def segment_end(started_at: datetime, duration_ms: int) -> datetime | None:
    """When a segment ends, or None when that is past the calendar's end (a bad row)."""
    try:
        return started_at + timedelta(milliseconds=duration_ms)
    except OverflowError:
        return None


def check_segment(
    *,
    seq: int,
    started_at: datetime,
    duration_ms: int,
    recording_start: datetime,
    before: tuple[datetime, int] | None,
    after: tuple[datetime, int] | None,
    now: datetime,
    skew: timedelta,
) -> None:
    """A new segment's time: inside the recording's window, after the segment declared with
    the next lower seq (`before`: its start and duration) ended and ending before the one
    with the next higher seq (`after`) starts."""
    _window("started_at", started_at, _earliest(recording_start, skew), now + skew)
    end = segment_end(started_at, duration_ms)
    if end is None or end > now + skew:
        raise _refused("duration_ms", "the segment would end in the future")
    if before is not None:
        before_end = segment_end(*before)
        if before_end is None or started_at < _shift(before_end, -OVERLAP_TOLERANCE):
            ends = before_end.isoformat() if before_end is not None else "never"
            raise _refused(
                "started_at",
                f"segment {seq} must start after the segment before it ends "
                f"({ends}): segments follow their seq in time",
            )
    if after is not None and end > _shift(after[0], OVERLAP_TOLERANCE):
        raise _refused(
            "started_at",
            f"segment {seq} must end before the segment after it starts "
            f"({after[0].isoformat()}): segments follow their seq in time",
        )


def check_gap(
    gap_from: datetime | None,
    gap_to: datetime | None,
    *,
    recording_start: datetime,
    now: datetime,
    skew: timedelta,
) -> None:
    for field, value in (("from", gap_from), ("to", gap_to)):
        if value is not None:
            _window(field, value, _earliest(recording_start, skew), now + skew)
    if gap_from is not None and gap_to is not None and gap_to < gap_from:
        raise _refused("to", "must not be before from")


def parse_day(raw: str | None, field: str = "day") -> date | None:
    """A UTC day asked for in a query (`YYYY-MM-DD`), within `[FIRST_DAY, LAST_DAY]`."""
    if not raw:
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise _refused(field, "must be YYYY-MM-DD") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise _refused(
            field, f"must be between {FIRST_DAY.isoformat()} and {LAST_DAY.isoformat()}"
        )
    return day
