"""The real agent program signs what it records: enrollment registers its key, every segment
it uploads carries a record the broker accepted, and the whole recording verifies."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import agentlog
from tests.support.api import Api, enrollment_code, make_tenant, make_user
from tests.support.broker import BrokerProcess
from tests.support.display import XDisplay
from tests.support.s3 import S3Endpoint


def agent(*args: str, home: Path, display: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).with_name("bucketreel-agent")), *args],
        env={**os.environ, "BUCKETREEL_AGENT_HOME": str(home), "DISPLAY": display},
        capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL,
    )


@pytest.mark.display
def test_the_agent_signs_a_recording_that_verifies(
    broker: BrokerProcess, s3_endpoint: S3Endpoint, xvfb: XDisplay, tmp_path: Path
) -> None:
    tenant = make_tenant(broker, s3_endpoint)
    code = enrollment_code(broker, tenant, make_user(broker, tenant))
    enrolled = agent("enroll", "--broker", broker.url, "--code", code, home=tmp_path,
                     display=xvfb.display)
    assert enrolled.returncode == 0, enrolled.stderr
    key_file = tmp_path / "device.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in key_file.read_bytes()
    device_id = json.loads((tmp_path / "device.json").read_text())["device_id"]
    listed = broker.admin("devices", "--tenant", tenant.name)["devices"]
    assert [d["custody_key"] for d in listed if d["device_id"] == device_id] == [True]

    done = agent("run", "--fps", "2", "--segment-seconds", "1", "--duration", "3",
                 home=tmp_path, display=xvfb.display)
    assert done.returncode == 0, done.stderr + broker.log_tail()
    recording_id = agentlog.events(done.stderr, "recording_started")[0]["recording_id"]
    credential = json.loads((tmp_path / "device.json").read_text())
    info = Api(broker.url).call(
        "GET", f"/api/v1/recordings/{recording_id}", token=credential["access_token"]
    ).body
    assert len(info["segments"]) >= 2
    assert all(s["record_hash"] for s in info["segments"])

    report = broker.admin("verify-recording", "--tenant", tenant.name, recording_id)
    assert report["ok"] is True, report
    assert report["verified"] == len(info["segments"])
    assert (report["record_format"], report["times_signed"]) == ("v2", True), report
