"""Pausing, all real: the agent program on an Xvfb that gets no input pauses after
`--idle-seconds`, resumes when xdotool moves the pointer, pauses while the screen saver is on
(`xset s activate`), and each pause shows in the recording's metadata at the broker as a gap
with its reason and time range."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.resilience.helpers import Site, running, site, uploaded_seqs
from tests.support.broker import BrokerProcess
from tests.support.display import XDisplay, run_xvfb
from tests.support.s3 import S3Endpoint

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def place(broker: BrokerProcess, s3_endpoint: S3Endpoint, tmp_path: Path) -> Iterator[Site]:
    with site(broker, s3_endpoint, tmp_path) as s:
        yield s


@pytest.fixture
def quiet_xvfb() -> Iterator[XDisplay]:
    """Nothing sends this display input (no animator either): its idle time only grows."""
    with run_xvfb(320, 240, animate=False) as display:
        yield display


def x(display: str, *command: str) -> None:
    subprocess.run(command, env={**os.environ, "DISPLAY": display}, check=True, timeout=10)


def count(lines: list[str], prefix: str) -> int:
    return sum(1 for line in lines if line.startswith(prefix))


def test_pauses_when_idle_and_resumes_on_input(place: Site, quiet_xvfb: XDisplay) -> None:
    with running(place.home, quiet_xvfb.display, "--fps", "4", "--segment-seconds", "30",
                 "--idle-seconds", "2", "--heartbeat-seconds", "1") as agent:
        rid = agent.recording_id
        agent.wait_for("the idle pause", lambda ls: count(ls, "paused: no input") == 1, 20)
        # the segment in progress was closed and uploaded at the pause, long before 30 s
        agent.wait_uploaded(1, timeout=20)
        status = (place.home / "status.json").read_text()
        assert '"state": "paused_idle"' in status
        x(quiet_xvfb.display, "xdotool", "mousemove", "100", "100")
        agent.wait_for("the resume", lambda ls: count(ls, "resumed after") == 1, 20)
        # no more input: it pauses again 2 s later, and that segment is uploaded too
        agent.wait_for("a second pause", lambda ls: count(ls, "paused: no input") == 2, 20)
        agent.wait_uploaded(2, timeout=20)
        agent.signal(signal.SIGTERM)
        assert agent.finish() == 0, agent.stderr
    assert uploaded_seqs(agent.lines) == [0, 1]

    info = place.recording(rid)
    pauses = [g for g in info["gaps"] if g["reason"] == "idle"]
    assert len(pauses) == 2, info["gaps"]
    first, second = pauses
    assert first["seqs"] == []
    assert second["seqs"] == []
    start0, end0 = datetime.fromisoformat(first["from"]), datetime.fromisoformat(first["to"])
    start1 = datetime.fromisoformat(second["from"])
    assert start0 < end0 <= start1
    assert datetime.fromisoformat(second["to"]) >= start1  # ended with the run
    segments = {s["seq"]: s for s in info["segments"]}
    seg0_end = datetime.fromisoformat(segments[0]["started_at"]).timestamp() + (
        segments[0]["duration_ms"] / 1000)
    # segment 0 ends around the pause; segment 1 starts after the resume
    assert abs(seg0_end - start0.timestamp()) < 1.5
    assert datetime.fromisoformat(segments[1]["started_at"]) >= end0
    assert {s["state"] for s in info["segments"]} == {"verified"}


def test_pauses_while_the_screen_is_locked(place: Site, quiet_xvfb: XDisplay) -> None:
    x(quiet_xvfb.display, "xset", "s", "reset")
    with running(place.home, quiet_xvfb.display, "--fps", "4", "--segment-seconds", "30",
                 "--idle-seconds", "60") as agent:
        rid = agent.recording_id
        assert rid
        # a lock present when the agent starts counts only once seen unlocked (agent.idle):
        # let the agent look at the unlocked screen first (it checks at every frame, 4 fps)
        time.sleep(1.5)
        x(quiet_xvfb.display, "xset", "s", "activate")
        agent.wait_for("the lock pause", lambda ls: count(ls, "paused: the screen is locked")
                       == 1, 20)
        agent.wait_uploaded(1, timeout=20)
        x(quiet_xvfb.display, "xset", "s", "reset")
        x(quiet_xvfb.display, "xdotool", "mousemove", "10", "10")
        agent.wait_for("the resume", lambda ls: count(ls, "resumed after") == 1, 20)
        time.sleep(1)  # a few frames after the resume
        agent.signal(signal.SIGTERM)
        assert agent.finish() == 0, agent.stderr
    assert uploaded_seqs(agent.lines) == [0, 1]
    (pause,) = place.recording(rid)["gaps"]
    assert pause["reason"] == "locked"
    assert datetime.fromisoformat(pause["from"]) < datetime.fromisoformat(pause["to"])


def test_the_settings_file_is_read_and_flags_override_it(
    place: Site, quiet_xvfb: XDisplay
) -> None:
    (place.home / "agent.toml").write_text("fps = 4\nidle_seconds = 1\nsegment_seconds = 30\n")
    with running(place.home, quiet_xvfb.display, "--fps", "2") as agent:
        assert agent.recording_id
        agent.wait_for("the idle pause", lambda ls: count(ls, "paused: no input for 1 s") == 1,
                       20)
        agent.signal(signal.SIGTERM)
        assert agent.finish() == 0, agent.stderr
    (started,) = [line for line in agent.lines if line.startswith("recording ")][:1]
    assert "2 fps, segments of 30 s" in started
