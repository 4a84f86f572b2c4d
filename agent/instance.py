"""One agent per user: an exclusive lock on `<config dir>/agent.lock` for the whole run.

The lock is the platform's (`agent.platform.lock`: `flock` on POSIX, `msvcrt.locking` on
Windows); the kernel releases it when the process ends, however it ends, so a stale lock
file never blocks a restart. `agent.lock.pid` beside it names the owner, for the message the
second instance prints; nothing else.
"""

from __future__ import annotations

import os
from pathlib import Path

from agent.errors import AgentError
from agent.platform.files import make_private_dir
from agent.platform.lock import ExclusiveFileLock, LockHeld

LOCK_FILE = "agent.lock"


class AlreadyRunning(AgentError):
    """Another agent of this user holds the lock."""


class InstanceLock:
    """Held from `acquire()` until `release()`, the end of this object or of the process."""

    def __init__(self, config_dir: Path) -> None:
        self.path = config_dir / LOCK_FILE
        self._lock = ExclusiveFileLock(self.path)

    def acquire(self) -> None:
        try:
            make_private_dir(self.path.parent)
            self._lock.acquire(os.getpid())
        except LockHeld as held:
            raise AlreadyRunning(
                "another bucketreel-agent is already running for this user"
                + (f" (pid {held.owner})" if held.owner else "")
                + f"; only one may run at a time (lock: {self.path})"
            ) from None
        except OSError as exc:
            raise AgentError(f"cannot lock {self.path}: {exc.strerror or exc}") from exc

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
