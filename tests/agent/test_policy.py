"""The broker's recording policy, all real: the agent program on Xvfb gets it in its heartbeat
replies and records by it from the next segment, while a setting given on its command line
still wins. The segments are read back from the bucket (frame times) and from the broker's
metadata (durations)."""

from __future__ import annotations

import io
import re
import signal
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import av
import pytest

from broker import admin
from shared.wire import PolicyUpdate
from tests.resilience.helpers import Site, running, site, uploaded_seqs
from tests.support.api import Operator
from tests.support.broker import BrokerProcess
from tests.support.display import XDisplay
from tests.support.s3 import S3Endpoint

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def place(broker: BrokerProcess, s3_endpoint: S3Endpoint, tmp_path: Path) -> Iterator[Site]:
    with site(broker, s3_endpoint, tmp_path) as s:
        yield s


def set_policy(place: Site, **values: float | str | None) -> None:
    Operator(place.broker).run(
        admin.set_policy, tenant=place.tenant.tenant_id, change=PolicyUpdate(values)
    )


def device_settings(place: Site) -> object:
    """The settings this agent last reported in its heartbeat, as the admin's list shows."""
    return (place.device()["last_status"] or {}).get("settings")


def frame_gaps(data: bytes) -> set[float]:
    """The time between consecutive frames of an MP4 segment (1/fps: the display animates, so
    no frame is left out as unchanged)."""
    with av.open(io.BytesIO(data)) as container:
        times = [float(frame.time) for frame in container.decode(video=0)]
    return {round(b - a, 3) for a, b in pairwise(times)}


def test_the_agent_records_by_the_policy_from_the_next_segment_and_its_flags_win(
    place: Site, xvfb: XDisplay
) -> None:
    # the policy asks for 2 fps and 3 s segments; the command line says 1 s segments
    set_policy(place, fps=2, segment_seconds=3)
    with running(place.home, xvfb.display, "--segment-seconds", "1",
                 "--heartbeat-seconds", "1", "--duration", "60") as agent:
        rid = agent.recording_id
        started = next(line for line in agent.lines if line.startswith("recording "))
        assert "2 fps, segments of 1 s" in started, started
        agent.wait_uploaded(2, timeout=20)
        set_policy(place, fps=4, idle_seconds=600)  # while it records
        agent.wait_for(
            "the policy change",
            lambda lines: any(
                "policy changed: now 4 fps, segments of 1 s, pause after 600 s idle" in line
                for line in lines
            ),
            timeout=10,
        )
        # the admin sees that it arrived: the device's heartbeat carries what it records with
        deadline = time.monotonic() + 10
        wanted = {"fps": 4, "segment_seconds": 1, "idle_seconds": 600, "quality": "standard"}
        while (reported := device_settings(place)) != wanted and time.monotonic() < deadline:
            time.sleep(0.2)
        assert reported == wanted
        agent.wait_for(  # "segment N uploaded: ..., 4 frame(s)": 1 s at 4 fps
            "two segments at 4 fps",
            lambda lines: sum(" 4 frame(s)" in line for line in lines) >= 2,
            timeout=20,
        )
        agent.signal(signal.SIGTERM)
        assert agent.finish() == 0, agent.stderr

    segments = sorted(place.recording(rid)["segments"], key=lambda s: s["seq"])
    objects = place.objects(rid)
    whole, last = segments[:-1], segments[-1]  # the last one ends with the run
    # 1 s each, as the flag says: never the policy's 3 s
    assert {s["duration_ms"] for s in whole} == {1000}, segments
    assert last["duration_ms"] <= 1000, segments
    # 2 fps until the change, 4 fps from the segment after it: no segment mixes the two
    gaps = [frame_gaps(objects[s["key"]]) for s in whole]
    assert all(g in ({0.5}, {0.25}) for g in gaps), gaps
    switch = gaps.index({0.25})
    assert switch >= 2, gaps
    assert gaps[switch:] == [{0.25}] * (len(gaps) - switch), gaps
    assert frame_gaps(objects[last["key"]]) <= {0.25}


def test_the_policy_sets_the_idle_timeout_unless_the_command_line_does(
    place: Site, xvfb: XDisplay
) -> None:
    # nothing sends the display input: one second after the start the agent is idle
    set_policy(place, idle_seconds=1)
    with running(place.home, xvfb.display, "--fps", "2", "--duration", "3") as agent:
        agent.wait_for("the idle pause", lambda ls: any("paused: no input for 1 s" in x
                                                         for x in ls), timeout=15)
        assert agent.finish() == 0, agent.stderr
    with running(place.home, xvfb.display, "--fps", "2", "--duration", "2.5",
                 "--idle-seconds", "0") as agent:
        assert agent.finish() == 0, agent.stderr
    assert not any("paused" in line for line in agent.lines), agent.stderr


def encoder_of(data: bytes) -> tuple[str, str | None]:
    """The codec of an MP4 segment, as its decoder names it, and libx264's CRF (None: AV1)."""
    with av.open(io.BytesIO(data)) as container:
        name = container.streams.video[0].codec_context.name
    crf = re.search(rb"crf=([0-9.]+)", data)  # libx264's settings message in the stream
    return name, None if crf is None else crf.group(1).decode()


def test_the_policys_quality_level_reaches_the_encoder_from_the_next_segment_and_a_flag_wins(
    place: Site, xvfb: XDisplay
) -> None:
    set_policy(place, quality="compact")
    with running(place.home, xvfb.display, "--fps", "2", "--segment-seconds", "1",
                 "--heartbeat-seconds", "1", "--duration", "60") as agent:
        rid = agent.recording_id
        agent.wait_uploaded(2, timeout=20)
        set_policy(place, quality="av1")
        agent.wait_for(
            "the quality change",
            lambda lines: any("policy changed: now" in line and "quality av1" in line
                              for line in lines),
            timeout=10,
        )
        after = len(uploaded_seqs(agent.lines))
        agent.wait_uploaded(after + 3, timeout=30)
        agent.signal(signal.SIGTERM)
        assert agent.finish() == 0, agent.stderr
    segments = sorted(place.recording(rid)["segments"], key=lambda s: s["seq"])
    objects = place.objects(rid)
    used = [encoder_of(objects[s["key"]]) for s in segments]
    # compact is H.264 at CRF 32 until the change; from the segment after it, AV1, to the end
    switch = next(i for i, e in enumerate(used) if e[0] != "h264")
    assert switch >= 2, used
    assert used[:switch] == [("h264", "32.0")] * switch, used
    assert set(used[switch:]) == {("libdav1d", None)}, used  # PyAV decodes AV1 with dav1d

    # the agent's own flag wins over the policy's level
    with running(place.home, xvfb.display, "--fps", "2", "--segment-seconds", "1",
                 "--quality", "high", "--duration", "2.5") as agent:
        rid = agent.recording_id
        assert agent.finish() == 0, agent.stderr
    objects = place.objects(rid)
    assert objects
    assert {encoder_of(data) for data in objects.values()} == {("h264", "24.0")}
