"""The idle backends: X11 measured on a real Xvfb (input from xdotool, the screen saver
switched on with xset); the Windows and macOS backends' arithmetic and parsing on sample
values (their system calls run only on their own platforms)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from agent.idle import IDLE, LOCKED, IdleWatch
from agent.platform import IdleState, IdleUnavailable, idle_state, linux, macos, windows
from tests.support.display import XDisplay, run_xvfb


@pytest.fixture(scope="module")
def quiet_xvfb() -> Iterator[XDisplay]:
    """A display of its own: nothing sends it input, so its idle time only grows."""
    with run_xvfb(320, 240, animate=False) as display:
        yield display


def x(display: str, *command: str) -> None:
    subprocess.run(command, env={**os.environ, "DISPLAY": display}, check=True, timeout=10)


def test_x11_idle_time_grows_without_input_and_resets_on_input(
    quiet_xvfb: XDisplay, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISPLAY", quiet_xvfb.display)
    x(quiet_xvfb.display, "xset", "s", "reset")
    x(quiet_xvfb.display, "xdotool", "mousemove", "5", "5")
    first = idle_state()
    time.sleep(0.6)
    later = idle_state()
    assert later.idle_seconds >= first.idle_seconds + 0.5
    assert not later.locked
    x(quiet_xvfb.display, "xdotool", "mousemove", "50", "60")
    assert idle_state().idle_seconds < later.idle_seconds


def test_x11_screen_saver_on_reads_as_locked(
    quiet_xvfb: XDisplay, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISPLAY", quiet_xvfb.display)
    try:
        x(quiet_xvfb.display, "xset", "s", "activate")
        assert idle_state().locked is True
    finally:
        x(quiet_xvfb.display, "xset", "s", "reset")
    assert idle_state().locked is False


def test_x11_without_a_display_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(IdleUnavailable, match="no X display"):
        linux.idle_state()
    with pytest.raises(IdleUnavailable, match="cannot open"):
        linux.X11Idle(":65000")  # nothing listens there


def test_x11_fields() -> None:
    assert linux.state_of(1500, linux.SCREEN_SAVER_OFF) == IdleState(1.5, False)
    assert linux.state_of(0, linux.SCREEN_SAVER_ON) == IdleState(0.0, True)
    assert linux.state_of(10, linux.SCREEN_SAVER_DISABLED).locked is False


def test_windows_tick_arithmetic_survives_the_wrap() -> None:
    assert windows.idle_ms(10_000, 4_000) == 6_000
    # GetTickCount wrapped (after 49.7 days) between the last input and now
    assert windows.idle_ms(1_000, 2**32 - 2_000) == 3_000
    assert windows.idle_ms(5, 5) == 0
    assert windows.state_of(2**32 - 1, 2**32 - 1001, input_desktop=0x1234) == IdleState(
        1.0, False
    )
    assert windows.state_of(7, 7, input_desktop=None).locked is True
    assert windows.state_of(7, 7, input_desktop=0).locked is True


IOREG_HID = """\
+-o IOHIDSystem  <class IOHIDSystem, id 0x100000488, registered, matched, active>
    {
      "IOClass" = "IOHIDSystem"
      "HIDParameters" = {"HIDClickTime"=500000000,"HIDIdleTime"=99}
      "HIDIdleTime" = 2750000000
      "IOProviderClass" = "IOResources"
    }
"""

IOREG_ROOT_LOCKED = """\
+-o Root  <class IORegistryEntry, id 0x100000100, retain 38>
    {
      "IOConsoleUsers" = ({"kCGSSessionOnConsoleKey"=Yes,"kCGSSessionUserIDKey"=501,\
"CGSSessionScreenIsLocked"=Yes,"kCGSessionLoginDoneKey"=Yes})
      "IOKitBuildVersion" = "Darwin Kernel Version 23.4.0"
    }
"""


def test_macos_ioreg_parsing() -> None:
    # the smallest HIDIdleTime reported: 99 ns from the nested parameters here
    assert macos.parse_idle_seconds(IOREG_HID) == pytest.approx(99e-9)
    only_top = IOREG_HID.replace('"HIDIdleTime"=99', '"Other"=1')
    assert macos.parse_idle_seconds(only_top) == pytest.approx(2.75)
    with pytest.raises(IdleUnavailable, match="HIDIdleTime"):
        macos.parse_idle_seconds("+-o IOHIDSystem\n    {\n    }\n")
    assert macos.parse_locked(IOREG_ROOT_LOCKED) is True
    assert macos.parse_locked(IOREG_ROOT_LOCKED.replace("IsLocked\"=Yes", "IsLocked\"=No")) \
        is False
    assert macos.parse_locked('"IOConsoleLocked" = Yes') is True
    assert macos.parse_locked("") is False


def test_other_platforms_backends_refuse_to_run_here() -> None:
    assert sys.platform == "linux"
    with pytest.raises(IdleUnavailable, match="Windows only"):
        windows.idle_state()
    with pytest.raises(IdleUnavailable, match="macOS only"):
        macos.idle_state()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_watch_counts_the_start_as_activity_and_pauses_after_the_limit() -> None:
    clock = Clock()
    state = IdleState(idle_seconds=5000.0, locked=False)  # idle long before the agent started
    watch = IdleWatch(10, probe=lambda: state, clock=clock)
    assert watch.check() is None
    clock.now += 9.5
    assert watch.check() is None
    clock.now += 0.2
    assert watch.check() is None  # answered from the last query (at most every poll s)
    clock.now += watch.poll
    assert watch.check() == IDLE
    state = IdleState(idle_seconds=0.1, locked=False)  # input
    clock.now += watch.poll
    assert watch.check() is None


def test_the_watch_pauses_on_a_lock_seen_to_engage_not_on_one_present_at_start() -> None:
    clock = Clock()
    state = IdleState(idle_seconds=0.0, locked=True)
    watch = IdleWatch(30, probe=lambda: state, clock=clock)
    assert watch.check() is None  # locked at start: the idle rule will pause it
    state = IdleState(idle_seconds=0.0, locked=False)
    clock.now += 1
    assert watch.check() is None
    state = IdleState(idle_seconds=0.0, locked=True)
    assert watch.check() is None  # queried at most every poll seconds
    clock.now += watch.poll
    assert watch.check() == LOCKED


def test_the_watch_disabled_by_zero_or_when_unmeasurable() -> None:
    calls = 0

    def probe() -> IdleState:
        nonlocal calls
        calls += 1
        return IdleState(1e9, True)

    assert IdleWatch(0, probe=probe).check() is None
    assert calls == 0

    def broken() -> IdleState:
        raise IdleUnavailable("no X display")

    watch = IdleWatch(1, probe=broken)
    assert watch.check() is None
    assert watch.enabled is False
