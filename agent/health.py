"""Capture health: noticing that the frames carry no picture, so that a blocked capture is
reported instead of uploaded as hours of black video.

A capture can run without error and still deliver nothing: macOS without the Screen Recording
permission hands out the wallpaper only, X11 capture in a Wayland session sees black
XWayland windows, a display may show one colour. `CaptureHealth` is fed every frame and
declares the capture `blocked` when, for `blocked_seconds` (default 2 minutes):

- the picture is all one colour and has not changed, or
- the picture has not changed while the user gave input (keyboard or pointer) since the
  last change, and lately: someone works, yet nothing moves.

The reason: what the OS says (`agent.platform.screen`: `no_permission` on macOS without the
permission, `wayland_session` on Linux under Wayland), else `display_blank` for one colour,
else `unknown`. Once blocked, the capture stays blocked until the picture changes; then it is
`ok` again at once. The recorder (agent.recorder) stops encoding while blocked, keeps
capturing (so it notices the picture's return) and reports the blocked time as a gap.

Whether the picture changed is decided byte for byte against the previous frame (a memcmp,
as the encoder's own skip of unchanged frames does; the reference is to the frame the encoder
holds anyway, so no copy): a sparse sample would miss a line being typed between its rows and
stop a working person's recording. "One colour" is first judged on a sparse grid of pixels
(every 64th pixel of 32 rows spread over the height) and, only when that grid is one colour
at the moment a capture would be declared blocked, confirmed over the whole frame.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agent.capture import Frame
from agent.cpu import STAGES
from agent.platform import screen

DEFAULT_BLOCKED_SECONDS = 120.0
GRID_ROWS = 32
GRID_STEP = 64  # pixels between two samples of a row
ROW_SHIFT = 23  # how much further along each row's first sample is than the previous one's
DISPLAY_BLANK = "display_blank"
UNKNOWN = "unknown"

LABELS = {
    "no_permission": "no permission to record the screen",
    "wayland_session": "a Wayland session",
    DISPLAY_BLANK: "the display shows one colour only",
    UNKNOWN: "the picture stays still while the user works",
}


@dataclass(frozen=True, slots=True)
class Sample:
    """A frame reduced to its grid of pixels (BGRA, 4 bytes each)."""

    pixels: bytes
    width: int
    height: int

    @property
    def one_colour(self) -> bool:
        first = self.pixels[:4]
        return first * (len(self.pixels) // 4) == self.pixels


def sample(raw: bytes | bytearray, width: int, height: int, *, rows: int = GRID_ROWS,
           step: int = GRID_STEP) -> Sample:
    """Every `step`th pixel of `rows` rows spread evenly over the height: only those pixels
    are copied. Each row starts at another offset, so a pattern repeating every few pixels
    (a grid, stripes) is not seen as one colour."""
    pixels = memoryview(raw).cast("I")  # one 32-bit word per BGRA pixel
    count = min(rows, height)
    parts = []
    for i in range(count):
        y = (2 * i + 1) * height // (2 * count)
        start = y * width + min((step // 2 + i * ROW_SHIFT) % step, width - 1)
        parts.append(pixels[start:(y + 1) * width:step].tobytes())
    return Sample(b"".join(parts), width, height)


def _same_picture(frame: Frame, last: Frame | None) -> bool:
    """Byte for byte; the sparse grid answers first when it already differs (a grid that
    differs means bytes that differ), so a changing screen costs no full-frame memcmp."""
    if last is None or (frame.width, frame.height) != (last.width, last.height):
        return False
    grid = sample(frame.raw, frame.width, frame.height)
    if grid != sample(last.raw, last.width, last.height):
        return False
    return frame.raw == last.raw


def one_colour(frame: Frame) -> bool:
    """Every pixel of `frame` the same: the sparse grid first, the whole frame to confirm."""
    if not sample(frame.raw, frame.width, frame.height).one_colour:
        return False
    raw = memoryview(frame.raw)
    return bytes(raw[:4]) * (len(raw) // 4) == raw


@dataclass(frozen=True, slots=True)
class Blocked:
    reason: str  # shared.wire.CaptureBlockReason
    since: datetime  # the capture time of the frame that declared it


def describe(reason: str) -> str:
    return LABELS.get(reason, reason)


class CaptureHealth:
    """Fed each frame from the capture thread (one thread); `blocked` is the state now."""

    def __init__(
        self,
        blocked_seconds: float = DEFAULT_BLOCKED_SECONDS,
        *,
        input_age: Callable[[], float | None] = lambda: None,
        cause: Callable[[], str | None] = screen.known_cause,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`input_age` answers the seconds since the user's last input (None: unknown);
        `cause` what the OS says blocks the capture (agent.platform.screen.known_cause).
        `blocked_seconds = 0` never declares a capture blocked."""
        self.blocked_seconds = blocked_seconds
        self._input_age = input_age
        self._cause = cause
        self._clock = clock
        self._last: Frame | None = None
        self._changed_at = 0.0  # monotonic: when the picture last changed
        self.blocked: Blocked | None = None

    def restart(self) -> None:
        """Forget the picture (after a pause: an unchanged screen then is no evidence)."""
        if self.blocked is None:
            self._last = None

    def feed(self, frame: Frame) -> bool:
        """Look at `frame`; True when the state changed (declared blocked, or ok again)."""
        now = self._clock()
        with STAGES.stage("compare"):
            same = _same_picture(frame, self._last)
        if not same:
            self._last, self._changed_at = frame, now
            if self.blocked is not None:
                self.blocked = None
                return True
            return False
        if self.blocked is not None or self.blocked_seconds <= 0:
            return False
        still = now - self._changed_at
        if still < self.blocked_seconds:
            return False
        blank = one_colour(frame)
        if not blank and not self._someone_works(still):
            return False
        self.blocked = Blocked(self._reason(blank), frame.captured_at)
        return True

    def _someone_works(self, still: float) -> bool:
        """Input came after the picture's last change, and within half the threshold."""
        age = self._input_age()
        return age is not None and age < still and age <= self.blocked_seconds / 2

    def known_cause(self) -> str | None:
        """What the OS says blocks the capture now (None: it says nothing)."""
        return self._cause()

    def _reason(self, blank: bool) -> str:
        cause = self._cause()
        if cause is not None:
            return cause
        return DISPLAY_BLANK if blank else UNKNOWN

    def state(self) -> dict[str, Any]:
        """For the status file and the heartbeat (shared.wire.CaptureState)."""
        if self.blocked is None:
            return {"state": "ok"}
        return {
            "state": "blocked", "reason": self.blocked.reason,
            "since": self.blocked.since.isoformat(timespec="seconds"),
        }


def status_line(capture: object) -> str | None:
    """`bucketreel-agent status`'s line for the status file's `capture` (None: absent)."""
    if not isinstance(capture, dict):
        return None
    if capture.get("state") != "blocked":
        return "capture: ok"
    reason = str(capture.get("reason") or UNKNOWN)
    return f"capture: blocked ({reason}: {describe(reason)}) since {capture.get('since')}"
