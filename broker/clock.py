"""Time, in one place, so services take a clock and tests can be exact."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta, tzinfo

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def day_bounds(day: date, zone: tzinfo = UTC) -> tuple[datetime, datetime]:
    """The calendar day `day` in `zone` as [start, end) in UTC (23 or 25 hours long on the
    days the clocks change). Arithmetic on aware datetimes of one zone is wall-clock
    arithmetic, so every comparison and difference is made in UTC."""
    start = datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(), tzinfo=zone).astimezone(UTC)
    return start, end


def local_hours(day: date, zone: tzinfo = UTC) -> Iterator[tuple[int, datetime]]:
    """Each full hour of `day` on the clocks of `zone` that exists (not the hour skipped when
    clocks go forward), with its moment in UTC."""
    for hour in range(24):
        at = datetime.combine(day, time(hour), tzinfo=zone).astimezone(UTC)
        if at.astimezone(zone).hour == hour:
            yield hour, at
