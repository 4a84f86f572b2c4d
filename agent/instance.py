"""One agent per user: an exclusive `flock` on `<config dir>/agent.lock` for the whole run.

The kernel releases the lock when the process ends, however it ends (kill -9 included), so a
stale lock file never blocks a restart. The file holds the owner's pid, for the message the
second instance prints; nothing else.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from agent.errors import AgentError

LOCK_FILE = "agent.lock"


class AlreadyRunning(AgentError):
    """Another agent of this user holds the lock."""


class InstanceLock:
    """Held from `acquire()` until `release()` or the end of the process."""

    def __init__(self, config_dir: Path) -> None:
        self.path = config_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            reason = exc.strerror or exc
            raise AgentError(f"cannot open the lock file {self.path}: {reason}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_pid(fd)
            os.close(fd)
            raise AlreadyRunning(
                "another bucketreel-agent is already running for this user"
                + (f" (pid {owner})" if owner else "")
                + f"; only one may run at a time (lock: {self.path})"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise AgentError(f"cannot lock {self.path}: {exc.strerror or exc}") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing the descriptor releases the flock

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
