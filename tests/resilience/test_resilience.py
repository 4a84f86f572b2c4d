"""The agent under adversity, all real: Xvfb, the agent program, the broker process, moto's
S3 API reached through a relay the test cuts (tests/support/cuttable.py).

Each test records with short segments (2 fps, 1 s segments) so a few seconds cover several.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.resilience.helpers import (
    Site,
    assert_verified_in_order,
    decoded_frames,
    running,
    site,
    uploaded_seqs,
)
from tests.support.broker import BrokerProcess
from tests.support.display import XDisplay
from tests.support.s3 import S3Endpoint

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

SHORT = ("--fps", "2", "--segment-seconds", "1")


@pytest.fixture
def place(broker: BrokerProcess, s3_endpoint: S3Endpoint, tmp_path: Path) -> Iterator[Site]:
    with site(broker, s3_endpoint, tmp_path) as s:
        yield s


def spooled(place: Site) -> list[Path]:
    return list(place.spool.iterdir()) if place.spool.exists() else []


def test_s3_cut_for_several_segments_then_restored_loses_nothing(
    place: Site, xvfb: XDisplay
) -> None:
    with running(place.home, xvfb.display, *SHORT, "--duration", "7") as agent:
        rid = agent.recording_id
        agent.wait_uploaded(1)
        place.relay.cut()
        cut_at = time.monotonic()
        # while cut, segments pile up sealed in the spool, never readable on disk
        deadline = time.monotonic() + 20
        while len(spooled(place)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        files = spooled(place)
        assert len(files) >= 2, agent.stderr
        for path in files:
            assert (path.stat().st_mode & 0o777) == 0o600
            assert b"ftyp" not in path.read_bytes()  # no MP4 in the clear
        time.sleep(max(0.0, 3.0 - (time.monotonic() - cut_at)))
        place.relay.restore()
        assert agent.finish() == 0, agent.stderr

    seqs = uploaded_seqs(agent.lines)
    assert seqs == list(range(len(seqs))), agent.stderr  # in order, none twice
    assert len(seqs) == 7, agent.stderr  # 14 ticks at 2 fps, 2 per segment
    assert_verified_in_order(place, rid, seqs)
    assert place.recording(rid)["state"] == "finished"
    assert "keeping it in the encrypted spool" in agent.stderr
    assert "went through the spool" in agent.stderr
    assert place.relay.stats.refused > 0  # the cut was real
    assert spooled(place) == []


def test_sigterm_finishes_and_uploads_the_current_segment(place: Site, xvfb: XDisplay) -> None:
    with running(place.home, xvfb.display, "--fps", "4", "--segment-seconds", "60") as agent:
        rid = agent.recording_id
        time.sleep(2.0)
        agent.signal(signal.SIGTERM)
        assert agent.finish() == 0, agent.stderr
    assert "SIGTERM: stopping" in agent.stderr
    assert uploaded_seqs(agent.lines) == [0]
    assert_verified_in_order(place, rid, [0])
    info = place.recording(rid)
    assert info["state"] == "finished"
    (data,) = place.objects(rid).values()
    assert 6 <= decoded_frames(data) <= 16  # about 2 s at 4 fps (animated: every frame new)
    assert 1500 <= info["segments"][0]["duration_ms"] <= 4000


def test_kill_9_then_restart_wipes_residue_and_keeps_what_was_uploaded(
    place: Site, xvfb: XDisplay
) -> None:
    with running(place.home, xvfb.display, *SHORT) as agent:
        first = agent.recording_id
        agent.wait_uploaded(2)
        place.relay.cut()  # so that sealed segments sit in the spool when we kill
        deadline = time.monotonic() + 20
        while not spooled(place) and time.monotonic() < deadline:
            time.sleep(0.1)
        residue = spooled(place)
        assert residue, agent.stderr
        agent.signal(signal.SIGKILL)
        assert agent.finish() == -signal.SIGKILL
    uploaded = uploaded_seqs(agent.lines)
    assert all(path.exists() for path in residue)  # nothing cleaned up after a kill -9
    place.relay.restore()

    with running(place.home, xvfb.display, *SHORT, "--duration", "2") as again:
        again.wait_for("the wipe", lambda ls: any("spool: wiped" in x for x in ls))
        assert not any(path.exists() for path in residue)
        second = again.recording_id
        assert again.finish() == 0, again.stderr
    assert "unreadable, so unrecoverable" in again.stderr
    assert_verified_in_order(place, second, [0, 1])
    # the killed run's recording was left "recording": the restart finished it, with a gap
    assert f"died with recording {first} open" in again.stderr
    closed = place.recording(first)
    assert closed["state"] == "finished"
    assert [g["reason"] for g in closed["gaps"]] == ["agent_died"]
    assert place.recording(second)["gaps"] == []

    # the killed recording: every segment reported uploaded is there and verified; what was
    # missing is only what was spooled or in flight at the kill (after the last upload)
    assert uploaded == list(range(len(uploaded)))
    info = place.recording(first)
    verified = [s["seq"] for s in info["segments"] if s["state"] == "verified"]
    assert verified == uploaded, info
    assert all(s["seq"] > uploaded[-1] for s in info["segments"] if s["state"] != "verified")
    objects = place.objects(first)
    assert len(objects) >= len(uploaded)
    assert {s["key"] for s in info["segments"] if s["state"] == "verified"} <= set(objects)


def test_spool_limit_drops_the_oldest_and_says_so(place: Site, xvfb: XDisplay) -> None:
    # The animated display's 1 s segments weigh about 2.4 KB: 6000 bytes hold two sealed
    # segments, never three, so the spool must drop while S3 is unreachable.
    place.relay.cut()  # S3 unreachable from the start
    with running(place.home, xvfb.display, *SHORT, "--duration", "6", "--spool-limit", "6000",
                 "--drain-seconds", "30") as agent:
        rid = agent.recording_id
        agent.wait_for("a drop", lambda ls: any(" DROPPED: " in x for x in ls), timeout=30)
        place.relay.restore()
        code = agent.finish()
    assert code == 1, agent.stderr
    dropped = [int(x.split()[1]) for x in agent.lines if " DROPPED: " in x]
    seqs = uploaded_seqs(agent.lines)
    assert dropped, agent.stderr
    assert dropped == list(range(len(dropped)))  # the oldest went first
    assert seqs == list(range(len(dropped), 6)), agent.stderr  # the rest arrived, in order
    # a dropped segment the broker granted stays pending; one whose grant failed too (the
    # broker checks the bucket before granting again) was never declared: both are gaps the
    # agent reported, with the reason
    declared = place.recording(rid)["segments"]
    pending = [x["seq"] for x in declared if x["state"] != "verified"]
    assert set(pending) <= set(dropped)
    assert_verified_in_order(place, rid, seqs, pending=pending)
    assert "(policy: drop the oldest); gap in recording" in agent.stderr
    assert agent.lines[-1] == (
        f"recording {rid}: {len(dropped)} segment(s) could not be "
        f"uploaded (seq {', '.join(map(str, dropped))}: dropped at the spool limit)"
    )
    last = agent.entries[-1]
    assert (last["event"], last["level"], last["exit_code"]) == ("exit", "error", 1)
    assert [e["seq"] for e in agent.entries if e["event"] == "segment_dropped"] == dropped
    assert spooled(place) == []
    gaps = place.recording(rid)["gaps"]
    assert [(g["seqs"], g["reason"]) for g in gaps] == [(dropped, "spool_limit")]
    status = json.loads((place.home / "status.json").read_text())
    assert status["gaps"] == dropped
    assert (status["state"], status["spool_bytes"]) == ("exited", 0)
    assert status["errors"] >= 1
