"""Xvfb and the animator: mss grabs frames of the right size that change (or don't)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import mss
import pytest

from tests.support.display import XDisplay, run_xvfb
from tests.support.procs import pid_alive


def grab(display: str) -> tuple[tuple[int, int], bytes]:
    with mss.MSS(display=display) as screen:
        shot = screen.grab(screen.monitors[1])
        return shot.size, bytes(shot.rgb)


def test_animated_display_changes(xvfb: XDisplay, xdisplay: str) -> None:
    assert xdisplay == xvfb.display
    assert xdisplay.startswith(":")
    size, first = grab(xdisplay)
    assert size == (1280, 720)
    time.sleep(0.3)
    _, second = grab(xdisplay)
    assert first != second


def test_still_display_does_not_change(still_xvfb: XDisplay) -> None:
    assert still_xvfb.animator_pid is None
    size, first = grab(still_xvfb.display)
    assert size == (1280, 720)
    time.sleep(0.3)
    assert grab(still_xvfb.display)[1] == first


@pytest.mark.display
def test_display_marker_sets_display(xdisplay: str) -> None:
    assert os.environ["DISPLAY"] == xdisplay
    with mss.MSS() as screen:
        assert screen.monitors[1]["width"] == 1280


def test_xvfb_and_animator_are_gone_after_stop() -> None:
    with run_xvfb(320, 200, fps=30) as display:
        assert display.animator_pid is not None
        pids = [display.pid, display.animator_pid]
        assert all(pid_alive(pid) for pid in pids)
        assert grab(display.display)[0] == (320, 200)
        socket = Path(f"/tmp/.X11-unix/X{display.number}")
        assert socket.exists()
    assert not any(pid_alive(pid) for pid in pids)
    assert not socket.exists()
