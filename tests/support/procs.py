"""Subprocesses for the test suite: free ports, readiness probes, stop by the process's own PID.

A `ManagedProcess` runs in its own session (so its process group id is its PID), writes
stdout and stderr to a log file, and is stopped by signalling that PID: the stop signal first,
SIGKILL to its process group after a timeout. Errors carry the tail of the log.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

INSTALL_HINT = "run scripts/install.sh"

Probe = Callable[[], bool]


class MissingDependencyError(RuntimeError):
    """Something the tests need is not installed; the message says what and how to get it."""


class ProcessStartError(RuntimeError):
    """A server exited or did not become ready; the message includes the tail of its log."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def require_executable(name: str, hint: str = INSTALL_HINT) -> str:
    """The full path of `name` on PATH, or MissingDependencyError("<name> not found: <hint>")."""
    path = shutil.which(name)
    if path is None:
        raise MissingDependencyError(f"{name} not found: {hint}")
    return path


def tcp_probe(host: str, port: int, timeout: float = 0.5) -> Probe:
    """Ready when a TCP connection to host:port succeeds."""

    def probe() -> bool:
        with socket.create_connection((host, port), timeout=timeout):
            return True

    return probe


def http_probe(url: str, *, status: int | None = 200, timeout: float = 2.0) -> Probe:
    """Ready when GET `url` answers with `status` (any HTTP answer when `status` is None)."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an HTTP URL: {url}")

    def probe() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
                code: int = response.status
        except urllib.error.HTTPError as err:
            code = err.code
            err.close()
        return status is None or code == status

    return probe


class ManagedProcess:
    """A server subprocess with a log file, a readiness wait and a stop by its own PID."""

    _counter = itertools.count()

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        pass_fds: Sequence[int] = (),
        stop_signal: signal.Signals = signal.SIGTERM,
        stop_timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.pass_fds = tuple(pass_fds)
        self.stop_signal = stop_signal
        self.stop_timeout = stop_timeout
        self._log_dir = Path(log_dir) if log_dir is not None else None
        self._owned_log_dir: Path | None = None
        self._log_path: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> Self:
        if self._proc is not None:
            raise RuntimeError(f"{self.name} was already started")
        if self._log_dir is None:
            self._owned_log_dir = Path(tempfile.mkdtemp(prefix=f"bucketreel-{self.name}-"))
            log_dir = self._owned_log_dir
        else:
            log_dir = self._log_dir
            log_dir.mkdir(parents=True, exist_ok=True)
        self._log_path = log_dir / f"{self.name}-{next(self._counter)}.log"
        try:
            with self._log_path.open("wb") as log:
                self._proc = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    cwd=self.cwd,
                    pass_fds=self.pass_fds,
                    start_new_session=True,  # own session: process group id == pid
                )
        except OSError as err:
            self._remove_owned_dir()
            raise ProcessStartError(f"cannot start {self.name} ({self.argv[0]}): {err}") from err
        _RUNNING.add(self)
        return self

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError(f"{self.name} has not been started")
        return self._proc.pid

    @property
    def log_path(self) -> Path:
        if self._log_path is None:
            raise RuntimeError(f"{self.name} has not been started")
        return self._log_path

    def has_exited(self) -> bool:
        """True once the process has ended (it is not reaped, so its PID stays ours)."""
        if self._proc is None:
            return False
        if self._proc.returncode is not None:
            return True
        try:
            result = os.waitid(os.P_PID, self._proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return result is not None

    def wait_ready(self, probe: Probe, *, timeout: float = 30.0, interval: float = 0.05) -> None:
        """Poll `probe` until it returns True; stop the process and raise if it never does."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while True:
            if self.has_exited():
                tail = self.log_tail()
                code = self.stop()
                raise ProcessStartError(
                    f"{self.name} exited with code {code} before it was ready\n"
                    f"command: {' '.join(self.argv)}\n--- end of its log ---\n{tail}"
                )
            try:
                if probe():
                    return
            except Exception as err:  # a probe failing only means "not ready yet"
                last_error = err
            if time.monotonic() >= deadline:
                tail = self.log_tail()
                self.stop()
                detail = f" (last probe error: {last_error!r})" if last_error else ""
                raise ProcessStartError(
                    f"{self.name} was not ready after {timeout:.0f}s{detail}\n"
                    f"command: {' '.join(self.argv)}\n--- end of its log ---\n{tail}"
                )
            time.sleep(interval)

    def stop(self) -> int | None:
        """Stop by PID: the stop signal, then SIGKILL to the process group. Returns the code."""
        proc = self._proc
        if proc is None:
            self._remove_owned_dir()
            return None
        if proc.returncode is None:
            if not self.has_exited():
                self._send(self.stop_signal)
                if not self._wait_exit(self.stop_timeout):
                    self._send_group(signal.SIGKILL)
                    self._wait_exit(10.0)
            # The leader has ended but is not reaped yet, so its process group id cannot have
            # been reused: anything still in the group is a straggler of ours.
            self._send_group(signal.SIGKILL)
            proc.wait()
        self.returncode = proc.returncode
        _RUNNING.discard(self)
        self._remove_owned_dir()
        return self.returncode

    def __enter__(self) -> Self:
        if self._proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- logs -------------------------------------------------------------------------------

    def log_text(self) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        return self._log_path.read_text(encoding="utf-8", errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # -- internals --------------------------------------------------------------------------

    def _send(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def _send_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def _wait_exit(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.has_exited():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def _remove_owned_dir(self) -> None:
        if self._owned_log_dir is not None:
            shutil.rmtree(self._owned_log_dir, ignore_errors=True)
            self._owned_log_dir = None

    def __repr__(self) -> str:
        pid = self._proc.pid if self._proc is not None else None
        return f"<ManagedProcess {self.name} pid={pid}>"


def pid_alive(pid: int) -> bool:
    """True while a process with this PID exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


_RUNNING: set[ManagedProcess] = set()


@atexit.register
def _stop_leftovers() -> None:
    """Safety net: stop every process a crashed or interrupted run left behind."""
    for proc in list(_RUNNING):
        with contextlib.suppress(Exception):
            proc.stop()
