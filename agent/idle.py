"""When to pause the recording: the user idle for longer than `idle_seconds`, or the screen
locked (see `agent.platform` for how each platform measures them).

The agent's own start counts as activity: idle time is measured from the later of the last
input and the start, and a screen that is already locked (or blanked) when the agent starts
counts only once it has been seen unlocked. So a freshly started agent always records at
least `idle_seconds` before it may pause, and an agent restarted under a lock screen records
at most that much of it before the idle rule pauses it. `idle_seconds = 0` disables pausing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from agent.cpu import STAGES
from agent.platform import IdleState, IdleUnavailable, idle_state

log = logging.getLogger(__name__)

IDLE = "idle"
LOCKED = "locked"
DEFAULT_IDLE_SECONDS = 300.0
INPUT_POLL = 1.0  # how often `input_age` queries the platform


class IdleWatch:
    """Thread safe. `check()` answers the pause reason ("idle", "locked") or None."""

    def __init__(
        self,
        idle_seconds: float,
        *,
        probe: Callable[[], IdleState] = idle_state,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self._clock = clock
        self._lock = threading.Lock()
        self._since = clock()  # the agent's start: counts as activity
        self._seen_unlocked = False
        self._unavailable = False
        self._checked_at: float | None = None
        self._answer: str | None = None
        self._input_at: float | None = None  # the last input as last queried (monotonic)
        self._input_checked_at = 0.0
        self.idle_seconds = idle_seconds

    @property
    def idle_seconds(self) -> float:
        return self._idle_seconds

    @idle_seconds.setter
    def idle_seconds(self, value: float) -> None:
        with self._lock:
            self._idle_seconds = max(0.0, float(value))
            self._checked_at = None  # decide afresh under the new limit

    @property
    def enabled(self) -> bool:
        return self._idle_seconds > 0 and not self._unavailable

    @property
    def poll(self) -> float:
        """How often the state is worth querying: a quarter of the limit, 0.2 to 1 s."""
        return min(1.0, max(0.2, self._idle_seconds / 4))

    def check(self) -> str | None:
        """The reason to be paused now, if any (queried at most every `poll` seconds)."""
        with self._lock:
            if not self.enabled:
                return None
            now = self._clock()
            if self._checked_at is not None and now - self._checked_at < self.poll:
                return self._answer
            self._checked_at = now
            state = self._query(now)
            if state is None:
                self._answer = None
                return None
            if not state.locked:
                self._seen_unlocked = True
            idle = min(state.idle_seconds, now - self._since)
            if state.locked and self._seen_unlocked:
                self._answer = LOCKED
            elif idle >= self._idle_seconds:
                self._answer = IDLE
            else:
                self._answer = None
            return self._answer

    def input_age(self) -> float | None:
        """Seconds since the user's last keyboard or pointer input, None when that cannot be
        measured (agent.health's "someone works"). Queried at most every `INPUT_POLL` s, even
        when idle pausing is off."""
        with self._lock:
            if self._unavailable:
                return None
            now = self._clock()
            stale = self._input_at is None or now - self._input_checked_at >= INPUT_POLL
            if (stale and self._query(now) is None) or self._input_at is None:
                return None
            return max(0.0, now - self._input_at)

    def _query(self, now: float) -> IdleState | None:
        """The probe's answer (None, and never asked again, when it cannot tell); the lock
        is held."""
        try:
            with STAGES.stage("idle"):
                state = self._probe()
        except IdleUnavailable as exc:
            self._unavailable = True
            log.warning("cannot tell idle time or screen lock, never pausing: %s", exc)
            return None
        self._input_at = now - state.idle_seconds
        self._input_checked_at = now
        return state
