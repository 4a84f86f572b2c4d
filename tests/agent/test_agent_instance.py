"""One agent per user (the lock on <config dir>/agent.lock), and `status`."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent.idle import DEFAULT_IDLE_SECONDS
from agent.instance import AlreadyRunning, InstanceLock
from tests.agent.fakebroker import FakeBroker
from tests.agent.test_agent_cli import ROOT, agent, agent_env, assert_no_secret, enroll, running


def test_a_second_lock_on_the_same_dir_is_refused_until_released(tmp_path: Path) -> None:
    first = InstanceLock(tmp_path / "conf")
    first.acquire()
    lock_file = tmp_path / "conf" / "agent.lock"
    assert stat.S_IMODE(lock_file.stat().st_mode) == 0o600
    assert (tmp_path / "conf" / "agent.lock.pid").read_text() == f"{os.getpid()}\n"
    owner = f"already running for this user \\(pid {os.getpid()}\\)"
    with pytest.raises(AlreadyRunning, match=owner):
        InstanceLock(tmp_path / "conf").acquire()
    first.release()
    assert not (tmp_path / "conf" / "agent.lock.pid").exists()
    with InstanceLock(tmp_path / "conf"):
        pass  # free again
    # another user's config dir: independent
    with InstanceLock(tmp_path / "other"), InstanceLock(tmp_path / "conf"):
        pass


@contextmanager
def lock_held_elsewhere(config_dir: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the instance lock on `config_dir`; killed at the end."""
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import time; from pathlib import Path; from agent.instance import InstanceLock;"
         f"lock = InstanceLock(Path({str(config_dir)!r})); lock.acquire();"
         "print('held', flush=True); time.sleep(60)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        yield holder
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_the_lock_dies_with_its_process(tmp_path: Path) -> None:
    with lock_held_elsewhere(tmp_path) as holder:
        with pytest.raises(AlreadyRunning):
            InstanceLock(tmp_path).acquire()
        holder.kill()  # SIGKILL: no clean-up code runs
        holder.wait(10)
        with InstanceLock(tmp_path):  # the kernel released it; the stale file is harmless
            pass


@pytest.mark.display
def test_a_second_run_refuses_to_start(fake_broker: FakeBroker, tmp_path: Path) -> None:
    enroll(fake_broker, tmp_path)
    spool = tmp_path / "spool"
    with running(fake_broker, tmp_path, "--fps", "2") as first:
        marker = spool / "belongs-to-the-first"
        marker.write_bytes(b"x")
        second = agent("run", "--fps", "2", "--duration", "1", home=tmp_path)
        assert second.returncode == 75
        assert second.stderr.strip() == (
            "bucketreel-agent: error: another bucketreel-agent is already running for this "
            f"user (pid {first.pid}); only one may run at a time (lock: {tmp_path}/agent.lock)"
        )
        assert marker.exists()  # the second did not wipe the first's spool
        assert len(fake_broker.recordings) == 1  # nor start a recording
        marker.unlink()
        first.terminate()
        _, stderr = first.communicate(timeout=60)
    assert first.returncode == 0, stderr


# -- `bucketreel-agent status` ----------------------------------------------------------


def test_status_when_nothing_ever_ran(tmp_path: Path) -> None:
    done = agent("status", home=tmp_path)
    assert done.returncode == 3
    assert done.stdout == "agent: not running\n"


@pytest.mark.display
def test_status_of_a_running_agent_then_of_a_stopped_one(
    fake_broker: FakeBroker, tmp_path: Path
) -> None:
    enroll(fake_broker, tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--fps", "4", "--segment-seconds", "1"],
        cwd=ROOT, env=agent_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while len(fake_broker.recordings.get("rec-1", {}).get("verified", ())) < 2:
            assert time.monotonic() < deadline, "no upload"
            time.sleep(0.05)
        status_file = tmp_path / "status.json"
        assert stat.S_IMODE(status_file.stat().st_mode) == 0o600
        shown = agent("status", home=tmp_path)
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        assert lines[0] == f"agent: running (pid {proc.pid}), recording"
        assert lines[1] == "recording: rec-1"
        assert lines[2] == (
            f"settings: 4 fps, segments of 1 s, pause after {DEFAULT_IDLE_SECONDS:g} s idle, "
            "quality standard"
        )
        assert lines[3] == "capture: ok"  # frames with a picture (agent.health)
        assert lines[4].startswith("segments uploaded: ")
        assert int(lines[4].split()[2].rstrip(",")) >= 2
        assert "spool: 0 segment(s), 0 bytes" in lines
        as_json = json.loads(agent("status", "--json", home=tmp_path).stdout)
        assert as_json["running"] is True
        assert as_json["recording_id"] == "rec-1"
        assert as_json["gaps"] == []
        proc.terminate()
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    after = agent("status", "--json", home=tmp_path)
    assert after.returncode == 3
    data = json.loads(after.stdout)
    assert (data["running"], data["state"], data["errors"]) == (False, "exited", 0)
    assert_no_secret(fake_broker, status_file.read_text())


def test_status_says_when_segments_wait_in_ram(tmp_path: Path) -> None:
    # what a stopped agent left in status.json while its disk refused the spool
    (tmp_path / "status.json").write_text(json.dumps({
        "pid": 1, "state": "stopped", "spool_segments": 3, "spool_bytes": 4096,
        "spool_memory_segments": 2, "spool_memory_bytes": 2048,
    }))
    shown = agent("status", home=tmp_path)
    assert shown.returncode == 3  # not running
    assert "spool: 3 segment(s), 4096 bytes (2 held in RAM: the disk refuses the spool)" in (
        shown.stdout.splitlines()
    ), shown.stdout
