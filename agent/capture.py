"""Screen capture with mss on a fixed, monotonic tick schedule.

Tick k is due at t0 + k/fps (monotonic clock). A frame grabbed late keeps the tick it was
due for; when the loop falls more than one tick behind it skips to the current tick instead
of firing the missed ones back to back. Each frame carries its tick, so the encoder can set
pts = tick and the video's timeline stays true to wall time, gaps included.

mss is not thread safe: a `ScreenCapture` opens its own mss instance inside `frames()`, in
the thread that iterates it.

Display changes: the monitor layout is read again every `refresh_ticks` ticks (the recorder
passes one segment's worth) and whenever a grab fails. When the chosen monitor's region has
changed (a new resolution, a monitor plugged or unplugged) the frames take the new size, and
the encoder starts a new segment for them; when the chosen monitor is gone, the whole screen
is recorded until it returns. Nothing crashes on a display change short of losing the display.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import mss

from agent.capture_pool import Grabber
from agent.cpu import STAGES
from agent.errors import CaptureError

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Monitors = list[dict[str, Any]]
Layout = Callable[[mss.MSS], Monitors]


def current_layout(sct: mss.MSS) -> Monitors:
    """The monitors as the display reports them now (mss caches them: drop its copy)."""
    if hasattr(sct, "_monitors"):
        sct._monitors = None  # mss re-enumerates on the next access
    return list(sct.monitors)


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    """One captured image: BGRA pixels, `height` rows of `width * 4` bytes, no padding.

    The bytes are the capture's own buffer, not a copy (and no numpy: the agent does not load
    it, which keeps about 12 MB off its resident memory). On mss's shared-memory path the
    buffer comes from a pool (agent/capture_pool.py) and is filled again for a later frame
    only once nothing refers to this one: a frame's pixels never change while it is held.
    """

    raw: bytes | bytearray = field(repr=False)
    width: int
    height: int
    tick: int
    captured_at: datetime  # UTC wall clock at the grab

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1 or len(self.raw) != self.width * self.height * 4:
            raise CaptureError(
                f"a {self.width}x{self.height} BGRA image needs "
                f"{self.width * self.height * 4} bytes, not {len(self.raw)}"
            )


@dataclass(frozen=True, slots=True)
class TickSchedule:
    """Tick k is due at `t0 + k / fps` on the monotonic clock."""

    fps: float
    t0: float

    def __post_init__(self) -> None:
        if not (self.fps > 0 and math.isfinite(self.fps)):
            raise ValueError("fps must be a positive number")

    @property
    def period(self) -> float:
        return 1.0 / self.fps

    def due(self, tick: int) -> float:
        return self.t0 + tick / self.fps

    def ticks_within(self, duration: float) -> int:
        """How many ticks are due in [t0, t0 + duration)."""
        return max(0, math.ceil(duration * self.fps - 1e-9))

    def current(self, now: float) -> int:
        """The latest tick due at or before `now` (0 before t0)."""
        return max(0, math.floor((now - self.t0) * self.fps))

    def catch_up(self, tick: int, now: float) -> int:
        """The tick to grab at `now` when `tick` is the next one planned.

        Still `tick` when we are less than one period late; otherwise the current tick, so
        missed ticks are skipped rather than grabbed in a burst.
        """
        if now - self.due(tick) > self.period:
            return max(tick, self.current(now))
        return tick


def monitor_region(monitors: list[dict[str, Any]], index: int) -> dict[str, int]:
    """The region of monitor `index` as mss numbers them (0 = all monitors as one canvas)."""
    if not 0 <= index < len(monitors):
        available = ", ".join(
            f"{i} ({m['width']}x{m['height']}{' all' if i == 0 else ''})"
            for i, m in enumerate(monitors)
        )
        raise CaptureError(f"there is no monitor {index}; available: {available}")
    mon = monitors[index]
    return {k: int(mon[k]) for k in ("left", "top", "width", "height")}


def _open_mss() -> mss.MSS:
    try:
        return mss.MSS()
    except mss.ScreenShotError as exc:
        raise CaptureError(f"cannot open the display: {exc}") from exc


def probe_monitor(index: int) -> dict[str, int]:
    """Check now, from the calling thread, that the display opens and the monitor exists."""
    sct = _open_mss()
    try:
        return monitor_region(sct.monitors, index)
    finally:
        sct.close()


class ScreenCapture:
    """Grabs one monitor (or all, `monitor=0`) at `fps` frames per second."""

    def __init__(
        self,
        *,
        monitor: int = 1,
        fps: float = 1.0,
        clock: Clock = time.monotonic,
        refresh_ticks: int | None = None,
        layout: Layout = current_layout,
        pooled: bool = True,
    ):
        if monitor < 0:
            raise CaptureError("the monitor number must be 0 (all) or more")
        self.monitor = monitor
        self.fps = fps
        self._clock = clock
        self.refresh_ticks = refresh_ticks  # re-read the monitor layout this often
        self._layout = layout
        self.pooled = pooled  # False: always mss's own grab (a fresh buffer per frame)
        self.skipped = 0  # ticks skipped because a grab (or the consumer) ran late
        self.layout_changes = 0  # times the recorded region changed mid-recording

    def _region(self, sct: mss.MSS, old: dict[str, int] | None) -> dict[str, int]:
        """The chosen monitor's region now; the whole screen while that monitor is gone."""
        monitors = self._layout(sct)
        try:
            region = monitor_region(monitors, self.monitor)
        except CaptureError:
            if old is None or not monitors:
                raise
            region = monitor_region(monitors, 0)
            if region != old:
                log.warning("monitor %d is gone: recording the whole screen", self.monitor)
        if old is not None and region != old:
            self.layout_changes += 1
            log.warning(
                "display changed: now %dx%d at %d,%d (was %dx%d): starting a new segment",
                region["width"], region["height"], region["left"], region["top"],
                old["width"], old["height"],
            )
        return region

    def _grab(
        self, sct: mss.MSS, grabber: Grabber, region: dict[str, int], tick: int
    ) -> tuple[Frame, dict[str, int]]:
        """Grab `region`; when that fails, read the layout again and grab what is there now."""
        try:
            with STAGES.stage("capture"):
                return self._frame(grabber, region, tick), region
        except mss.ScreenShotError as exc:
            first = exc
        try:
            fresh = self._region(sct, region)
        except mss.ScreenShotError as exc:
            raise CaptureError(f"screen capture failed: {exc}") from exc
        if fresh == region:
            raise CaptureError(f"screen capture failed: {first}") from first
        try:
            with STAGES.stage("capture"):
                return self._frame(grabber, fresh, tick), fresh
        except mss.ScreenShotError as exc:
            raise CaptureError(f"screen capture failed: {exc}") from exc

    @staticmethod
    def _frame(grabber: Grabber, region: dict[str, int], tick: int) -> Frame:
        raw, width, height = grabber.grab(region)
        return Frame(raw=raw, width=width, height=height, tick=tick,
                     captured_at=datetime.now(UTC))

    def frames(
        self,
        stop: threading.Event,
        *,
        duration: float | None = None,
        t0: float | None = None,
    ) -> Generator[Frame, None, None]:
        """Frames until `stop` is set or `duration` seconds of ticks have been covered.

        With a duration, exactly the ticks due in [t0, t0 + duration) are candidates
        (ceil(duration * fps) of them, fewer if some are skipped). `t0` is the monotonic
        time of tick 0 (default: once the display is open). mss is opened in the iterating
        thread.
        """
        sct = _open_mss()
        try:
            grabber = Grabber(sct, pooled=self.pooled)
            region = self._region(sct, None)
            last_refresh = 0
            # tick 0 is now, after the (sometimes slow) connection to the display
            schedule = TickSchedule(self.fps, self._clock() if t0 is None else t0)
            end_tick = None if duration is None else schedule.ticks_within(duration)
            tick = 0
            while not stop.is_set() and (end_tick is None or tick < end_tick):
                wait = schedule.due(tick) - self._clock()
                if wait > 0 and stop.wait(wait):
                    break
                planned, tick = tick, schedule.catch_up(tick, self._clock())
                if end_tick is not None and tick >= end_tick:
                    self.skipped += end_tick - planned
                    break
                self.skipped += tick - planned
                if self.refresh_ticks and tick - last_refresh >= self.refresh_ticks:
                    last_refresh = tick
                    try:
                        region = self._region(sct, region)
                    except (CaptureError, mss.ScreenShotError) as exc:
                        log.warning("could not read the monitor layout: %s", exc)
                frame, region = self._grab(sct, grabber, region, tick)
                yield frame
                del frame  # so its buffer is free for the next grab once the consumers drop it
                tick += 1
        finally:
            sct.close()
