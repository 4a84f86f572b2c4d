"""The frozen one-file `bucketreel-agent` binary itself, not the source tree.

The session builds it once, with the repository's own script (`build/build_agent.py`) into a
temp dir, then runs the binary from a directory outside the repository with an environment
that points at no Python: its version, its help, and a short real recording on Xvfb that
lands in the bucket, is verified by the broker and decodes.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from shared import version
from tests.conftest import DISPLAY_SIZE
from tests.support import agentlog
from tests.support.api import Api, enrollment_code, make_tenant, make_user
from tests.support.broker import BrokerProcess
from tests.support.display import XDisplay
from tests.support.s3 import S3Endpoint

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "build" / "build_agent.py"
NAME = "bucketreel-agent"
BUILD_TIMEOUT = 900

FPS = 2
SEGMENT_SECONDS = 1
DURATION = 2.5


@pytest.fixture(scope="session")
def agent_binary() -> Iterator[Path]:
    """Build the binary once per session (a couple of minutes); removed at the end."""
    if importlib.util.find_spec("PyInstaller") is None:
        pytest.fail("PyInstaller is not installed (dev extra): run scripts/install.sh",
                    pytrace=False)
    out = Path(tempfile.mkdtemp(prefix="bucketreel-binary-"))
    try:
        result = subprocess.run(
            [sys.executable, str(BUILD_SCRIPT), "--dist", str(out / "dist"),
             "--work", str(out / "work"), "--cold-start", "0"],
            cwd=ROOT, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            pytest.fail(f"building the binary failed:\n{result.stdout}\n{result.stderr}",
                        pytrace=False)
        binary = out / "dist" / NAME
        if not binary.is_file():
            pytest.fail(f"the build reported success but {binary} is missing", pytrace=False)
        yield binary
    finally:
        shutil.rmtree(out, ignore_errors=True)


def frozen_env(**extra: str) -> dict[str, str]:
    """An environment with no route back to the venv or the source tree."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/nonexistent"),
        "LANG": "C.UTF-8",
        "AWS_EC2_METADATA_DISABLED": "true",
        **extra,
    }


def run_binary(
    binary: Path, *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), *args], cwd=cwd, env=frozen_env(**(env or {})), capture_output=True,
        text=True,
        timeout=timeout, check=False, stdin=subprocess.DEVNULL,
    )


def test_binary_is_a_single_executable_file(agent_binary: Path) -> None:
    assert agent_binary.stat().st_mode & 0o111, "the binary is executable"
    assert not (agent_binary.parent / "_internal").exists(), "one file, no side directory"


def test_binary_version_is_the_package_version(agent_binary: Path, tmp_path: Path) -> None:
    result = run_binary(agent_binary, "--version", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{NAME} {version()}"
    assert version() != "0+unknown", "the version came from the bundled package metadata"


def test_binary_help_lists_its_commands(agent_binary: Path, tmp_path: Path) -> None:
    result = run_binary(agent_binary, "--help", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {NAME}")
    for command in ("enroll", "run"):
        assert command in result.stdout


def test_binary_refuses_a_bad_flag_with_usage_status(agent_binary: Path, tmp_path: Path) -> None:
    result = run_binary(agent_binary, "run", "--fps", "0", cwd=tmp_path)

    assert result.returncode == 2
    assert "--fps" in result.stderr


def decoded_frames(data: bytes) -> int:
    with av.open(io.BytesIO(data), mode="r") as container:
        return len(list(container.decode(video=0)))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_binary_records_a_real_screen_into_the_bucket(
    agent_binary: Path, broker: BrokerProcess, s3_endpoint: S3Endpoint, xvfb: XDisplay,
    tmp_path: Path,
) -> None:
    tenant = make_tenant(broker, s3_endpoint)
    code = enrollment_code(broker, tenant, make_user(broker, tenant))
    home = tmp_path / "agent-home"
    env = {"BUCKETREEL_AGENT_HOME": str(home), "DISPLAY": xvfb.display}

    enrolled = run_binary(
        agent_binary, "enroll", "--broker", broker.url, "--code", code, cwd=tmp_path, env=env
    )
    assert enrolled.returncode == 0, enrolled.stderr
    done = run_binary(
        agent_binary, "run", "--fps", str(FPS), "--segment-seconds", str(SEGMENT_SECONDS),
        "--duration", str(DURATION), cwd=tmp_path, env=env,
    )
    assert done.returncode == 0, done.stderr + broker.log_tail()

    recording_id = agentlog.events(done.stderr, "recording_started")[0]["recording_id"]
    credential = json.loads((home / "device.json").read_text())
    info = Api(broker.url).call(
        "GET", f"/api/v1/recordings/{recording_id}", token=credential["access_token"]
    )
    assert info.status == 200, info.body
    assert info.body["state"] == "finished"
    segments = info.body["segments"]
    assert len(segments) >= 2
    assert [s["seq"] for s in segments] == list(range(len(segments)))
    assert {s["state"] for s in segments} == {"verified"}

    s3 = s3_endpoint.client()
    frames = 0
    for segment in segments:
        data = s3.get_object(Bucket=tenant.bucket, Key=segment["key"])["Body"].read()
        assert len(data) == segment["size"]
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.video[0]
            assert (stream.codec_context.width, stream.codec_context.height) == DISPLAY_SIZE
            assert stream.codec_context.name == "h264"
        count = decoded_frames(data)
        assert count > 0, f"segment {segment['seq']} decodes on its own"
        frames += count
    assert abs(frames - FPS * DURATION) <= 1.5
