"""Capture: the tick schedule (pure), and mss on the suite's real Xvfb display."""

from __future__ import annotations

import threading
import time
from datetime import UTC

import pytest

from agent.capture import ScreenCapture, TickSchedule, monitor_region, probe_monitor
from agent.errors import CaptureError

# -- the schedule, no display needed ---------------------------------------------------


def test_ticks_are_due_on_a_fixed_grid() -> None:
    s = TickSchedule(fps=4.0, t0=100.0)
    assert [s.due(k) for k in range(4)] == [100.0, 100.25, 100.5, 100.75]
    assert s.period == 0.25
    assert s.current(99.0) == 0
    assert s.current(100.6) == 2


def test_catch_up_keeps_the_tick_when_less_than_a_period_late() -> None:
    s = TickSchedule(fps=4.0, t0=0.0)
    assert s.catch_up(3, now=0.75) == 3  # on time
    assert s.catch_up(3, now=0.95) == 3  # late by less than a tick: still tick 3


def test_catch_up_skips_ticks_rather_than_bunching_them() -> None:
    s = TickSchedule(fps=4.0, t0=0.0)
    assert s.catch_up(3, now=1.30) == 5  # ticks 3 and 4 are skipped
    assert s.catch_up(3, now=10.0) == 40
    assert s.catch_up(7, now=0.0) == 7  # never goes backwards


@pytest.mark.parametrize(
    ("fps", "duration", "ticks"), [(1, 1, 1), (1, 1.5, 2), (4, 2.5, 10), (0.5, 3, 2), (10, 0.3, 3)]
)
def test_ticks_within_a_duration(fps: float, duration: float, ticks: int) -> None:
    assert TickSchedule(fps=fps, t0=0.0).ticks_within(duration) == ticks


def test_schedule_refuses_a_bad_rate() -> None:
    with pytest.raises(ValueError, match="fps"):
        TickSchedule(fps=0.0, t0=0.0)


def test_monitor_region_names_the_available_monitors() -> None:
    monitors = [
        {"left": 0, "top": 0, "width": 3840, "height": 1080},
        {"left": 0, "top": 0, "width": 1920, "height": 1080, "is_primary": True},
        {"left": 1920, "top": 0, "width": 1920, "height": 1080},
    ]
    assert monitor_region(monitors, 2) == {"left": 1920, "top": 0, "width": 1920, "height": 1080}
    with pytest.raises(CaptureError, match=r"no monitor 3; available: 0 \(3840x1080 all\)"):
        monitor_region(monitors, 3)


# -- real capture on the suite's Xvfb ---------------------------------------------------


@pytest.mark.display
def test_frames_follow_the_schedule_on_a_real_display() -> None:
    cap = ScreenCapture(monitor=1, fps=10.0)
    frames = list(cap.frames(threading.Event(), duration=1.0))
    assert [f.tick for f in frames] == list(range(10))
    assert cap.skipped == 0
    first = frames[0]
    assert (first.width, first.height) == (1280, 720)
    assert len(first.raw) == 720 * 1280 * 4
    assert first.captured_at.tzinfo is UTC
    spacing = (frames[-1].captured_at - first.captured_at).total_seconds()
    assert 0.8 <= spacing <= 1.2
    # the suite's display is animated: the picture changes between frames
    assert first.raw != frames[-1].raw


@pytest.mark.display
def test_a_slow_consumer_makes_capture_skip_ticks() -> None:
    cap = ScreenCapture(monitor=1, fps=10.0)
    ticks = []
    for frame in cap.frames(threading.Event(), duration=1.0):
        ticks.append(frame.tick)
        if frame.tick == 0:
            time.sleep(0.35)  # three ticks' worth
    assert ticks[0] == 0
    assert ticks[1] >= 3  # ticks 1..2 skipped, not grabbed in a burst
    assert ticks == sorted(set(ticks))
    assert cap.skipped == 10 - len(ticks)


@pytest.mark.display
def test_stop_event_ends_capture() -> None:
    stop = threading.Event()
    cap = ScreenCapture(monitor=0, fps=20.0)
    count = 0
    for _ in cap.frames(stop):
        count += 1
        if count == 3:
            stop.set()
    assert count == 3


@pytest.mark.display
def test_probe_monitor() -> None:
    assert probe_monitor(1) == {"left": 0, "top": 0, "width": 1280, "height": 720}
    with pytest.raises(CaptureError, match="no monitor 7"):
        probe_monitor(7)


def test_no_display_is_a_capture_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(CaptureError, match="display"):
        probe_monitor(1)
