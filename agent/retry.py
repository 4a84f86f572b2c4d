"""Retry policy: bounded exponential backoff with jitter, and `Retry-After` parsing."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How often and how patiently to try again.

    `attempts` counts every try, the first included. The delay before retry number n
    (n = 1, 2, ...) is drawn uniformly from [c/2, c] with c = min(max_delay, base_delay * 2**(n-1))
    ("equal jitter": never zero, never above the cap). A server's `Retry-After` replaces the
    computed delay, capped at `max_retry_after`.
    """

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 300.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if not 0 < self.base_delay <= self.max_delay:
            raise ValueError("need 0 < base_delay <= max_delay")
        if self.max_retry_after < 0:
            raise ValueError("max_retry_after must not be negative")

    def ceiling(self, retry: int) -> float:
        """The largest delay before retry number `retry` (1-based), without Retry-After."""
        if retry < 1:
            raise ValueError("retry numbers start at 1")
        # min() before the power would overflow: 2**1100 is fine for int, not for float
        exponent = min(retry - 1, 64)
        return float(min(self.max_delay, self.base_delay * 2.0**exponent))

    def delay(
        self, retry: int, rng: random.Random, *, retry_after: float | None = None
    ) -> float:
        """Seconds to wait before retry number `retry` (1-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        ceiling = self.ceiling(retry)
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date), None if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
