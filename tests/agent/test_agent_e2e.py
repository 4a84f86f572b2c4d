"""The agent program against the real broker process and the real S3 API (moto's server).

No fake here: `bucketreel-agent enroll` and `run` as subprocesses, the broker from
tests/support (its own admin CLI sets up the tenant), the bucket read back with boto3, the
recording read back from the broker's API. One database backend (SQLite) is enough here: the
broker's own tests cover both.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import av
import pytest

from tests.support import agentlog
from tests.support.api import Api, enrollment_code, make_tenant, make_user
from tests.support.broker import BrokerProcess
from tests.support.s3 import S3Endpoint

ROOT = Path(__file__).resolve().parents[2]


def agent(*args: str, home: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        cwd=ROOT, env={**os.environ, "BUCKETREEL_AGENT_HOME": str(home)},
        capture_output=True, text=True, timeout=timeout, check=False,
    )


@pytest.mark.display
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_enroll_and_record_into_the_bucket(
    broker: BrokerProcess, s3_endpoint: S3Endpoint, tmp_path: Path
) -> None:
    tenant = make_tenant(broker, s3_endpoint)
    user_id = make_user(broker, tenant)
    code = enrollment_code(broker, tenant, user_id)

    enrolled = agent("enroll", "--broker", broker.url, "--code", code, "--name", "e2e",
                     home=tmp_path)
    assert enrolled.returncode == 0, enrolled.stderr
    device = json.loads((tmp_path / "device.json").read_text())

    done = agent("run", "--fps", "4", "--segment-seconds", "1", "--duration", "2.5",
                 home=tmp_path)
    assert done.returncode == 0, done.stderr + broker.log_tail()

    recording_id = agentlog.events(done.stderr, "recording_started")[0]["recording_id"]
    # the device's credential may have rotated during the run: read the file again
    device = json.loads((tmp_path / "device.json").read_text())
    info = Api(broker.url).call(
        "GET", f"/api/v1/recordings/{recording_id}", token=device["access_token"]
    )
    assert info.status == 200, info.body
    assert info.body["state"] == "finished"
    segments = info.body["segments"]
    assert [(s["seq"], s["state"]) for s in segments] == [
        (0, "verified"), (1, "verified"), (2, "verified")
    ]
    assert [s["duration_ms"] for s in segments] == [1000, 1000, 500]

    s3 = s3_endpoint.client()
    counts = []
    for segment in segments:
        data = s3.get_object(Bucket=tenant.bucket, Key=segment["key"])["Body"].read()
        assert len(data) == segment["size"]
        assert data.index(b"moov") < data.index(b"mdat")
        with av.open(io.BytesIO(data)) as container:
            frames = list(container.decode(video=0))
        assert frames[0].key_frame
        counts.append(len(frames))
    assert counts == [4, 4, 2]

    uploaded = [e["message"] for e in agentlog.events(done.stderr, "segment_uploaded")]
    assert len(uploaded) == 3
    assert uploaded[0].endswith(f"/{tenant.bucket}/{segments[0]['key']}")
    for text in (done.stdout, done.stderr, enrolled.stdout, enrolled.stderr):
        assert "X-Amz-Signature" not in text
        assert device["refresh_token"] not in text
        assert device["access_token"] not in text
    assert all(urlsplit(line.split(" -> ")[1]).query == "" for line in uploaded)
