"""A capture without a picture, all real: the agent program on an Xvfb whose screen is one
colour (`xsetroot -solid black`, no window) or still, while XTEST input (xdotool) goes on,
declares the capture blocked after `--capture-blocked-seconds`, says so in its log, in
`status` and in the heartbeat (the admin's device list), uploads nothing meanwhile, and
resumes by itself when the picture changes again; the blocked time is a gap
`capture_blocked` with its time range, shown with its reason in the manager's day view."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest

from tests.identity.people import Client, person
from tests.resilience.helpers import AGENT, Site, agent_env, running, site, uploaded_seqs
from tests.support.broker import BrokerProcess
from tests.support.display import XDisplay, run_xvfb
from tests.support.s3 import S3Endpoint

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

BLOCKED = "screen capture blocked ("
RESUMED = "screen capture works again"


@pytest.fixture
def place(broker: BrokerProcess, s3_endpoint: S3Endpoint, tmp_path: Path) -> Iterator[Site]:
    with site(broker, s3_endpoint, tmp_path) as s:
        yield s


@pytest.fixture
def black_xvfb(monkeypatch: pytest.MonkeyPatch) -> Iterator[XDisplay]:
    """A display of its own, no animator, its root window black; an X11 session."""
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("XDG_SESSION_TYPE", "x11")
    with run_xvfb(320, 240, animate=False) as display:
        x(display.display, "xsetroot", "-solid", "black")
        yield display


def x(display: str, *command: str) -> None:
    subprocess.run(command, env={**os.environ, "DISPLAY": display}, check=True, timeout=10)


@contextmanager
def repeating(period: float, action: Callable[[int], None]) -> Iterator[None]:
    """Run `action(i)` every `period` seconds from a thread until the block ends."""
    done = threading.Event()

    def loop() -> None:
        i = 0
        while not done.wait(period):
            action(i)
            i += 1

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(15)


def count(lines: list[str], prefix: str) -> int:
    return sum(1 for line in lines if line.startswith(prefix))


def wait_until(what: str, test: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not test():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout} s")
        time.sleep(0.25)


def status_text(home: Path) -> str:
    done = subprocess.run([AGENT, "status"], env=agent_env(home, ""), capture_output=True,
                          text=True, timeout=30, check=False)
    return done.stdout


def test_a_black_screen_while_someone_works_is_a_gap_that_clears(
    place: Site, black_xvfb: XDisplay
) -> None:
    display = black_xvfb.display

    def move(i: int) -> None:
        x(display, "xdotool", "mousemove", str(10 + i % 200), str(10 + i % 100))

    colours = ("red", "blue", "green", "yellow")
    with repeating(0.2, move), running(
        place.home, display, "--fps", "4", "--segment-seconds", "30",
        "--capture-blocked-seconds", "3", "--heartbeat-seconds", "1",
    ) as agent:
        rid = agent.recording_id
        agent.wait_for("the blocked capture", lambda ls: count(ls, BLOCKED) == 1, 30)
        (line,) = [ln for ln in agent.lines if ln.startswith(BLOCKED)]
        assert line.startswith("screen capture blocked (display_blank: ")
        # the segment in progress was closed and uploaded at once, long before 30 s
        agent.wait_uploaded(1, timeout=20)
        assert '"state": "capture_blocked"' in (place.home / "status.json").read_text()
        assert "capture: blocked (display_blank: " in status_text(place.home)
        wait_until("the blocked state in the admin's device list", lambda: (
            (place.device().get("capture") or {}).get("state") == "blocked"))
        device = place.device()
        assert device["capture"]["reason"] == "display_blank"
        assert device["last_status"]["state"] == "capture_blocked"
        time.sleep(2)
        assert len(uploaded_seqs(agent.lines)) == 1, "nothing is uploaded while blocked"

        with repeating(0.3, lambda i: x(display, "xsetroot", "-solid", colours[i % 4])):
            agent.wait_for("the resume", lambda ls: count(ls, RESUMED) == 1, 20)
            assert "capture: ok" in status_text(place.home)
            wait_until("the ok state in the admin's device list", lambda: (
                (place.device().get("capture") or {}).get("state") == "ok"))
            time.sleep(1.5)  # a few changing frames recorded after the resume
        agent.signal(signal.SIGTERM)
        assert agent.finish() == 0, agent.stderr
    assert uploaded_seqs(agent.lines) == [0, 1]

    info = place.recording(rid)
    (gap,) = [g for g in info["gaps"] if g["reason"] == "capture_blocked"]
    assert gap["seqs"] == []
    start, end = datetime.fromisoformat(gap["from"]), datetime.fromisoformat(gap["to"])
    assert start < end
    segments = {s["seq"]: s for s in info["segments"]}
    seg0_end = datetime.fromisoformat(segments[0]["started_at"]).timestamp() + (
        segments[0]["duration_ms"] / 1000)
    assert abs(seg0_end - start.timestamp()) < 1.5  # segment 0 ends where the gap starts
    assert datetime.fromisoformat(segments[1]["started_at"]) >= end
    assert {s["state"] for s in info["segments"]} == {"verified"}

    admin = person(Client(place.broker.url), place.broker, place.tenant, "admin")
    day = Client(place.broker.url).call(
        "GET", f"/employees/{place.device()['user_id']}", token=admin.access_token)
    assert day.status == 200, day.raw[:500]
    assert b"screen capture blocked" in day.raw


def test_a_still_screen_while_someone_works_is_blocked_too(
    place: Site, black_xvfb: XDisplay
) -> None:
    display = black_xvfb.display
    x(display, "xsetroot", "-mod", "8", "8", "-fg", "white", "-bg", "navy")  # a still pattern

    def move(i: int) -> None:
        x(display, "xdotool", "mousemove", str(10 + i % 200), str(10 + i % 100))

    with running(place.home, display, "--fps", "4", "--segment-seconds", "30",
                 "--capture-blocked-seconds", "3") as agent:
        assert agent.recording_id
        time.sleep(5)  # no input: a still screen is someone reading, not a blocked capture
        assert count(agent.lines, BLOCKED) == 0
        with repeating(0.2, move):
            agent.wait_for("the blocked capture", lambda ls: count(ls, BLOCKED) == 1, 20)
        agent.signal(signal.SIGTERM)
        assert agent.finish() == 0, agent.stderr
    (line,) = [ln for ln in agent.lines if ln.startswith(BLOCKED)]
    assert line.startswith("screen capture blocked (unknown: ")


def test_a_wayland_session_is_named_at_start_and_as_the_reason(
    place: Site, black_xvfb: XDisplay, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_SESSION_TYPE", "wayland")  # as the agent started in one sees it
    display = black_xvfb.display

    def move(i: int) -> None:
        x(display, "xdotool", "mousemove", str(10 + i % 200), "50")

    with repeating(0.2, move), running(
        place.home, display, "--fps", "4", "--capture-blocked-seconds", "2", "--duration", "6",
    ) as agent:
        assert agent.finish() == 0, agent.stderr
    (warning,) = [ln for ln in agent.lines if ln.startswith("warning: this is a Wayland")]
    assert "Xorg" in warning
    assert agent.lines.index(warning) < next(
        i for i, ln in enumerate(agent.lines) if ln.startswith("recording "))
    (line,) = [ln for ln in agent.lines if ln.startswith(BLOCKED)]
    assert line.startswith("screen capture blocked (wayland_session: ")
    assert "Xorg" in line
