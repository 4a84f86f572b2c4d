"""A real screen recorded into a bucket, end to end: Xvfb, the agent program, the broker
process (SQLite and PostgreSQL), and moto's S3 server over HTTP. Nothing is faked."""

from __future__ import annotations

import io
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from tests.conftest import DISPLAY_SIZE
from tests.support import agentlog
from tests.support.api import Api, Tenant, enrollment_code, make_tenant, make_user
from tests.support.broker import BrokerProcess
from tests.support.display import XDisplay
from tests.support.proxy import counting_relay
from tests.support.s3 import S3Endpoint

FPS = 2
SEGMENT_SECONDS = 2
DURATION = 5


def agent(
    *args: str, home: Path, display: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).with_name("bucketreel-agent")), *args],
        env={**os.environ, "BUCKETREEL_AGENT_HOME": str(home), "DISPLAY": display},
        capture_output=True, text=True, timeout=timeout, check=False,
        stdin=subprocess.DEVNULL,
    )


def record(
    broker_url: str, broker: BrokerProcess, tenant: Tenant, home: Path, display: str
) -> tuple[str, dict[str, Any]]:
    """Enroll an agent against `broker_url`, record, and return (recording id, credential)."""
    code = enrollment_code(broker, tenant, make_user(broker, tenant))
    enrolled = agent("enroll", "--broker", broker_url, "--code", code, home=home, display=display)
    assert enrolled.returncode == 0, enrolled.stderr
    done = agent(
        "run", "--fps", str(FPS), "--segment-seconds", str(SEGMENT_SECONDS),
        "--duration", str(DURATION), home=home, display=display,
    )
    assert done.returncode == 0, done.stderr + broker.log_tail()
    recording_id = agentlog.events(done.stderr, "recording_started")[0]["recording_id"]
    return recording_id, json.loads((home / "device.json").read_text())


def decode(data: bytes) -> list[np.ndarray]:
    with av.open(io.BytesIO(data)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


@pytest.mark.display
def test_a_real_screen_lands_in_the_bucket_and_plays(
    broker: BrokerProcess, s3_endpoint: S3Endpoint, xvfb: XDisplay, tmp_path: Path
) -> None:
    tenant = make_tenant(broker, s3_endpoint)
    recording_id, credential = record(broker.url, broker, tenant, tmp_path, xvfb.display)

    info = Api(broker.url).call(
        "GET", f"/api/v1/recordings/{recording_id}", token=credential["access_token"]
    )
    assert info.status == 200
    assert info.body["state"] == "finished"
    segments = info.body["segments"]
    assert [s["seq"] for s in segments] == list(range(len(segments)))
    assert {s["state"] for s in segments} == {"verified"}

    s3 = s3_endpoint.client()
    frames: list[np.ndarray] = []
    for segment in segments:
        data = s3.get_object(Bucket=tenant.bucket, Key=segment["key"])["Body"].read()
        assert len(data) == segment["size"]
        decoded = decode(data)  # each segment decodes on its own
        assert decoded, f"segment {segment['seq']} has no frames"
        frames.extend(decoded)
    width, height = DISPLAY_SIZE
    assert {f.shape for f in frames} == {(height, width, 3)}
    assert abs(len(frames) - FPS * DURATION) <= 1
    assert any(not np.array_equal(frames[0], f) for f in frames[1:]), "the screen was animated"


def noisy_background(display: XDisplay, tmp_path: Path) -> None:
    """Tile the root window with random pixels, which no encoder can shrink much."""
    side = 256
    noise = secrets.token_bytes(side * side // 8)
    bits = ",\n".join(
        ", ".join(f"0x{b:02x}" for b in noise[i : i + 12]) for i in range(0, len(noise), 12)
    )
    xbm = tmp_path / "noise.xbm"
    xbm.write_text(
        f"#define noise_width {side}\n#define noise_height {side}\n"
        f"static unsigned char noise_bits[] = {{\n{bits} }};\n"
    )
    subprocess.run(
        ["xsetroot", "-bitmap", str(xbm), "-fg", "#ff8800", "-bg", "#0022aa"],
        env={**os.environ, "DISPLAY": display.display}, check=True, timeout=30,
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_no_recording_byte_passes_through_the_broker(
    broker: BrokerProcess, s3_endpoint: S3Endpoint, still_xvfb: XDisplay, tmp_path: Path
) -> None:
    """DESIGN G1: every byte between agent and broker is counted on the wire."""
    noisy_background(still_xvfb, tmp_path)
    tenant = make_tenant(broker, s3_endpoint)
    host, port = broker.url.removeprefix("http://").split(":")
    with counting_relay(host, int(port)) as (relay_url, counts):
        recording_id, credential = record(relay_url, broker, tenant, tmp_path, still_xvfb.display)
    info = Api(broker.url).call(
        "GET", f"/api/v1/recordings/{recording_id}", token=credential["access_token"]
    )
    sizes = [s["size"] for s in info.body["segments"]]

    assert len(sizes) >= 3
    assert {s["state"] for s in info.body["segments"]} == {"verified"}
    media = sum(sizes)
    # The agent's whole conversation with the broker, both directions, headers included,
    # is far smaller than even the smallest segment it recorded.
    assert counts.to_server < min(sizes) / 10, (counts, sizes)
    assert counts.to_client < min(sizes) / 10, (counts, sizes)
    assert counts.to_server + counts.to_client < media / 50, (counts, sizes)
