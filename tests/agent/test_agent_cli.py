"""`bucketreel-agent` as a subprocess: usage, enroll, and `run` on the suite's Xvfb display.

The broker and the bucket are the `fake_broker` fixture (tests/agent/conftest.py): a FAKE of
both, because they are separate systems; the agent under test is the real program. The
lead's end-to-end tests run the same commands against the real broker and S3 endpoint.
"""

from __future__ import annotations

import io
import json
import os
import pty
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import av
import pytest

from agent.custody import DeviceKey
from agent.logs import LOG_FORMAT_ENV
from tests.agent.fakebroker import SIGNATURE, FakeBroker
from tests.support import agentlog

ROOT = Path(__file__).resolve().parents[2]


def agent_env(home: Path, **extra: str) -> dict[str, str]:
    """The text format (the one a terminal gets) unless `extra` says otherwise: these tests
    read the agent's lines as a person would; JSON logs have tests of their own below."""
    return {**os.environ, "BUCKETREEL_AGENT_HOME": str(home), LOG_FORMAT_ENV: "text", **extra}


def agent(
    *args: str, home: Path, stdin: str | None = None, timeout: float = 60,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        cwd=ROOT, env=agent_env(home) if env is None else env, input=stdin,
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def enroll(fake: FakeBroker, home: Path) -> str:
    done = agent("enroll", "--broker", fake.url, "--code", fake.issue_code(), home=home)
    assert done.returncode == 0, done.stderr
    return done.stdout


@contextmanager
def running(fake: FakeBroker, home: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    """`bucketreel-agent run ARGS` in the background, yielded once the broker has seen its
    recording start; killed at the end if the test left it running."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", *args],
        cwd=ROOT, env=agent_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not fake.recordings and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fake.recordings, "the agent did not start a recording"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def secrets_of(fake: FakeBroker) -> list[str]:
    with fake.lock:
        return [SIGNATURE, *fake.access, *fake.refresh, *fake.dead_refresh]


def assert_no_secret(fake: FakeBroker, *texts: str) -> None:
    for secret in secrets_of(fake):
        for text in texts:
            assert secret not in text


def test_help_and_version(tmp_path: Path) -> None:
    done = agent("--help", home=tmp_path)
    assert done.returncode == 0
    assert "enroll" in done.stdout
    assert "run" in done.stdout
    done = agent("--version", home=tmp_path)
    assert done.returncode == 0
    assert done.stdout.startswith("bucketreel-agent ")


def test_console_script_is_installed(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("bucketreel-agent")
    done = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, check=False,
        env=agent_env(tmp_path),
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["run", "--fps", "0"],
        ["run", "--fps", "nan"],
        ["run", "--segment-seconds", "0.5"],
        ["run", "--monitor", "-1"],
        ["run", "--duration", "0"],
        ["enroll", "--code", "x"],
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    done = agent(*args, home=tmp_path)
    assert done.returncode == 2
    assert "usage:" in done.stderr


def test_run_without_enrollment_says_so(tmp_path: Path) -> None:
    done = agent("run", "--duration", "1", home=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("bucketreel-agent: error: this device is not enrolled")


def test_enroll_stores_a_private_credential_and_prints_no_token(
    fake_broker: FakeBroker, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    code = fake_broker.issue_code()
    done = agent(
        "enroll", "--broker", fake_broker.url + "/", "--code", code, "--name", "ws-7", home=home
    )
    assert done.returncode == 0, done.stderr
    assert "device dev-1" in done.stdout
    cred_file = home / "device.json"
    assert stat.S_IMODE(cred_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    stored = json.loads(cred_file.read_text())
    assert stored["broker_url"] == fake_broker.url
    assert stored["device_id"] == "dev-1"
    assert stored["refresh_token"] in fake_broker.refresh
    (request,) = fake_broker.requests("POST", "/api/v1/devices/enroll")
    key = DeviceKey.load(home / "device.key")  # the chain-of-custody key, 0600 beside it
    assert key is not None
    assert stat.S_IMODE((home / "device.key").stat().st_mode) == 0o600
    assert json.loads(request.body) == {"code": code, "name": "ws-7", "public_key": key.public_key}
    assert_no_secret(fake_broker, done.stdout, done.stderr)


def test_enroll_code_from_stdin_and_default_name(fake_broker: FakeBroker, tmp_path: Path) -> None:
    code = fake_broker.issue_code()
    done = agent("enroll", "--broker", fake_broker.url, "--code", "-", home=tmp_path,
                 stdin=code + "\n")
    assert done.returncode == 0, done.stderr
    (request,) = fake_broker.requests("POST", "/api/v1/devices/enroll")
    body = json.loads(request.body)
    assert body["code"] == code
    assert body["name"]  # the host name


def test_enroll_refusals(fake_broker: FakeBroker, tmp_path: Path) -> None:
    done = agent("enroll", "--broker", fake_broker.url, "--code", "wrong", home=tmp_path)
    assert done.returncode == 1
    assert "enrollment failed" in done.stderr
    assert "invalid_enrollment_code" in done.stderr
    assert not (tmp_path / "device.json").exists()

    enroll(fake_broker, tmp_path)
    again = agent("enroll", "--broker", fake_broker.url, "--code", fake_broker.issue_code(),
                  home=tmp_path)
    assert again.returncode == 1
    assert "already enrolled" in again.stderr
    forced = agent("enroll", "--broker", fake_broker.url, "--code", fake_broker.issue_code(),
                   "--force", home=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert "dev-2" in forced.stdout


def test_loose_credential_file_is_refused(fake_broker: FakeBroker, tmp_path: Path) -> None:
    enroll(fake_broker, tmp_path)
    (tmp_path / "device.json").chmod(0o644)
    done = agent("run", "--duration", "1", home=tmp_path)
    assert done.returncode == 1
    assert "chmod 600" in done.stderr


def test_unreachable_broker_is_a_clean_error(tmp_path: Path, fake_broker: FakeBroker) -> None:
    url = fake_broker.url
    fake_broker.stop()
    done = agent("enroll", "--broker", url, "--code", "c", home=tmp_path)
    assert done.returncode == 1
    last = done.stderr.splitlines()[-1]
    assert last.startswith("bucketreel-agent: error: enrollment failed: broker: cannot connect")
    assert "Traceback" not in done.stderr


# -- run on the suite's Xvfb ------------------------------------------------------------


def decode(data: bytes) -> list[av.VideoFrame]:
    with av.open(io.BytesIO(data)) as container:
        return list(container.decode(video=0))


@pytest.mark.display
def test_run_for_a_duration_uploads_every_segment_then_finishes(
    fake_broker: FakeBroker, tmp_path: Path
) -> None:
    enroll(fake_broker, tmp_path)
    spool = tmp_path / "spool"
    (spool / "old").mkdir(parents=True)
    (spool / "old" / "leftover.bin").write_bytes(b"residue")

    done = agent("run", "--fps", "4", "--segment-seconds", "1", "--duration", "2.5",
                 home=tmp_path)

    assert done.returncode == 0, done.stderr
    assert list(spool.iterdir()) == []  # wiped at start
    (rid,) = fake_broker.recordings
    recording = fake_broker.recordings[rid]
    assert recording["finished"]
    assert recording["verified"] == {0, 1, 2}
    keys = sorted(k for k in fake_broker.objects if f"/{rid}/" in k)
    assert [k.rsplit("/", 1)[1] for k in keys] == ["000000.mp4", "000001.mp4", "000002.mp4"]
    frame_counts = []
    for key in keys:
        data = fake_broker.objects[key]
        assert data.index(b"moov") < data.index(b"mdat")
        frames = decode(data)
        assert frames[0].key_frame
        assert (frames[0].width, frames[0].height) == (1280, 720)
        frame_counts.append(len(frames))
    assert frame_counts == [4, 4, 2]  # 10 ticks at 4 fps in 2.5 s, 4 ticks per segment
    declared = [fake_broker.declared[(rid, seq)] for seq in range(3)]
    assert [d.duration_ms for d in declared] == [1000, 1000, 500]
    lines = [line for line in done.stderr.splitlines() if " uploaded: " in line]
    assert len(lines) == 3
    assert lines[0].startswith("segment 0 uploaded: ")
    assert lines[0].endswith(f"/s3/{keys[0]}")
    assert f"recording {rid} finished: 3 segment(s) uploaded" in done.stderr
    assert_no_secret(fake_broker, done.stdout, done.stderr)


@pytest.mark.display
def test_run_without_a_terminal_logs_one_json_object_per_line(
    fake_broker: FakeBroker, tmp_path: Path
) -> None:
    """Under a service manager (stderr not a terminal) every line is a JSON log entry: each
    segment an event with its fields, warnings and the final error included."""
    enroll(fake_broker, tmp_path)
    env = {k: v for k, v in agent_env(tmp_path).items() if k != LOG_FORMAT_ENV}
    done = agent("run", "--fps", "4", "--segment-seconds", "1", "--duration", "2.5",
                 home=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    logged = agentlog.entries(done.stderr)  # fails on any line that is not a JSON entry
    (rid,) = fake_broker.recordings
    names = [e["event"] for e in logged if e["event"] != "log"]
    assert names == ["recording_started", *["segment_uploaded"] * 3, "recording_finished"]
    started = agentlog.events(done.stderr, "recording_started")[0]
    assert (started["recording_id"], started["fps"], started["segment_seconds"]) == (rid, 4, 1)
    uploaded = agentlog.events(done.stderr, "segment_uploaded")
    assert [(e["seq"], e["recording_id"], e["frames"], e["duration_ms"]) for e in uploaded] == [
        (0, rid, 4, 1000), (1, rid, 4, 1000), (2, rid, 2, 500)]
    for e in uploaded:
        assert e["size"] == len(fake_broker.objects[e["key"].split("/s3/", 1)[1]])
        assert e["message"].startswith(f"segment {e['seq']} uploaded: ")
    (finished,) = agentlog.events(done.stderr, "recording_finished")
    assert (finished["uploaded"], finished["missing"]) == (3, 0)
    assert_no_secret(fake_broker, done.stderr)

    fake_broker.fail("PUT", "/s3/", 400, body=b"<Error><Code>BadDigest</Code></Error>")
    done = agent("run", "--fps", "4", "--segment-seconds", "1", "--duration", "1.5",
                 home=tmp_path, env=env)
    assert done.returncode == 1
    logged = agentlog.entries(done.stderr)
    (failed,) = agentlog.events(done.stderr, "segment_failed")
    assert failed["seq"] == 0
    assert "400" in failed["error"]
    last = logged[-1]
    assert (last["event"], last["level"], last["exit_code"]) == ("exit", "error", 1)
    assert "1 segment(s) could not be uploaded" in last["message"]


@pytest.mark.display
def test_run_on_a_terminal_prints_a_readable_line_per_segment(
    fake_broker: FakeBroker, tmp_path: Path
) -> None:
    enroll(fake_broker, tmp_path)
    env = {k: v for k, v in agent_env(tmp_path).items() if k != LOG_FORMAT_ENV}
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--fps", "4", "--segment-seconds", "1",
             "--duration", "1.5"],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=follower,
        )
        os.close(follower)
        follower = -1
        output = bytearray()
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the agent closed the terminal's last writer
                break
            if not chunk:
                break
            output += chunk
        assert proc.wait(60) == 0, output.decode(errors="replace")
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    lines = output.decode().replace("\r\n", "\n").splitlines()
    assert not any(line.startswith("{") for line in lines), "no JSON on a terminal"
    # reports as bare lines; log messages (warnings, if any) are prefixed
    lines = [line for line in lines if not line.startswith("bucketreel-agent: WARNING: ")]
    (rid,) = fake_broker.recordings
    assert lines[0].startswith(f"recording {rid} started: ")
    assert [line.split(":")[0] for line in lines if " uploaded: " in line] == [
        "segment 0 uploaded", "segment 1 uploaded"]
    assert lines[-1].startswith(f"recording {rid} finished: 2 segment(s) uploaded, 0 missing")


@pytest.mark.display
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_gracefully(
    fake_broker: FakeBroker, tmp_path: Path, signum: signal.Signals
) -> None:
    enroll(fake_broker, tmp_path)
    with running(fake_broker, tmp_path, "--fps", "5", "--segment-seconds", "60") as proc:
        time.sleep(1.5)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    (rid,) = fake_broker.recordings
    assert fake_broker.recordings[rid]["finished"]
    assert fake_broker.recordings[rid]["verified"] == {0}  # the partial segment made it
    (key,) = [k for k in fake_broker.objects if f"/{rid}/" in k]
    assert 5 <= len(decode(fake_broker.objects[key])) <= 12
    assert f"{signum.name}: stopping" in stderr


@pytest.mark.display
def test_run_on_a_missing_monitor_fails_before_starting_a_recording(
    fake_broker: FakeBroker, tmp_path: Path
) -> None:
    enroll(fake_broker, tmp_path)
    done = agent("run", "--monitor", "9", "--duration", "1", home=tmp_path)
    assert done.returncode == 1
    assert "no monitor 9" in done.stderr
    assert fake_broker.recordings == {}


@pytest.mark.display
def test_revoked_device_stops_the_run_with_an_error(
    fake_broker: FakeBroker, tmp_path: Path
) -> None:
    enroll(fake_broker, tmp_path)
    with fake_broker.lock:
        fake_broker.access.clear()
        fake_broker.refresh.clear()
    done = agent("run", "--duration", "1", home=tmp_path)
    assert done.returncode == 1
    assert "enroll this device again" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.display
def test_a_segment_s3_refuses_is_reported_and_the_run_fails_at_the_end(
    fake_broker: FakeBroker, tmp_path: Path
) -> None:
    enroll(fake_broker, tmp_path)
    fake_broker.fail("PUT", "/s3/", 400, body=b"<Error><Code>BadDigest</Code></Error>")
    done = agent("run", "--fps", "4", "--segment-seconds", "1", "--duration", "2.5",
                 home=tmp_path)
    assert done.returncode == 1
    (rid,) = fake_broker.recordings
    assert fake_broker.recordings[rid]["verified"] == {1, 2}  # the others still made it
    assert fake_broker.recordings[rid]["finished"]
    assert "segment 0 NOT uploaded" in done.stderr
    assert done.stderr.splitlines()[-1] == (
        f"bucketreel-agent: error: recording {rid}: 1 segment(s) could not be uploaded "
        "(seq 0: refused)"
    )


@pytest.mark.display
def test_second_interrupt_aborts_with_130(fake_broker: FakeBroker, tmp_path: Path) -> None:
    enroll(fake_broker, tmp_path)
    fake_broker.fail("PUT", "/s3/", 503, times=999)  # the graceful stop cannot finish
    with running(fake_broker, tmp_path, "--fps", "5") as proc:
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 30
        while not fake_broker.requests("PUT") and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert stderr.splitlines()[-1] == "bucketreel-agent: error: interrupted"
