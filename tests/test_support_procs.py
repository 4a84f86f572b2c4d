"""The process helpers: free ports, readiness, stop by PID (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from tests.support.procs import (
    ManagedProcess,
    MissingDependencyError,
    ProcessStartError,
    free_port,
    pid_alive,
    require_executable,
    tcp_probe,
)


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_free_port_can_be_bound() -> None:
    port = free_port()
    assert 0 < port < 65536
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_missing_executable_says_what_is_missing() -> None:
    with pytest.raises(MissingDependencyError, match="no-such-tool-xyz not found: run scripts"):
        require_executable("no-such-tool-xyz")


def test_process_is_ready_then_stopped_by_its_pid() -> None:
    port = free_port()
    server = python(
        "import socket, time\n"
        f"s = socket.create_server(('127.0.0.1', {port}))\n"
        "print('listening', flush=True)\n"
        "time.sleep(60)\n"
    )
    with ManagedProcess("listener", server) as proc:
        proc.wait_ready(tcp_probe("127.0.0.1", port), timeout=20)
        pid = proc.pid
        assert pid_alive(pid)
        assert "listening" in proc.log_text()
        log_dir = proc.log_path.parent
    assert proc.returncode == -signal.SIGTERM
    assert not pid_alive(pid)
    assert not log_dir.exists()  # its own temp dir is removed


def test_stubborn_process_and_its_children_are_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    stubborn = python(
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = ManagedProcess("stubborn", stubborn, log_dir=tmp_path, stop_timeout=0.5).start()
    proc.wait_ready(lambda: "ready" in proc.log_text(), timeout=20)
    child = int(pid_file.read_text())
    assert pid_alive(proc.pid)
    assert pid_alive(child)
    assert proc.stop() == -signal.SIGKILL
    assert not pid_alive(proc.pid)
    for _ in range(100):  # the child is killed with its group; give the kernel a moment
        if not pid_alive(child):
            break
        time.sleep(0.02)
    assert not pid_alive(child), "the child in the process group survived"


def test_early_exit_fails_with_the_log_tail() -> None:
    proc = ManagedProcess("crasher", python("print('missing thing: frobnicator'); exit(3)"))
    proc.start()
    with pytest.raises(ProcessStartError, match=r"(?s)exited with code 3.*frobnicator"):
        proc.wait_ready(lambda: False, timeout=20)
    assert not pid_alive(proc.pid)


def test_timeout_fails_and_stops_the_process() -> None:
    proc = ManagedProcess("sleeper", python("import time; print('zzz'); time.sleep(60)")).start()
    with pytest.raises(ProcessStartError, match=r"(?s)not ready after .*zzz"):
        proc.wait_ready(lambda: False, timeout=1)
    assert not pid_alive(proc.pid)
    assert proc.returncode == -signal.SIGTERM


def test_missing_program_fails_clearly() -> None:
    with pytest.raises(ProcessStartError, match="cannot start nothing"):
        ManagedProcess("nothing", ["/nonexistent/program"]).start()
