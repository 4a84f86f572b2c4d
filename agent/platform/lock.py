"""An exclusive, non-blocking lock on a file, held until released or the process ends.

`filelock` does the locking: `flock` on POSIX, `msvcrt.locking` on Windows, both released by
the kernel when the process dies (kill -9 included), so a stale lock file never blocks a
restart. It refuses a symbolic link in place of the lock file. Chosen over hand-written
`fcntl`/`msvcrt` calls because it is maintained, typed and tested on every OS by its authors.

The holder's pid goes to a file of its own beside the lock (Windows locks the lock file's
bytes, so no one else could read a pid from it), for the message a second instance prints.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import filelock

from agent.platform.files import write_atomic


class LockHeld(Exception):
    """Another process holds the lock; `owner` is its pid when it said so."""

    def __init__(self, path: Path, owner: int | None) -> None:
        super().__init__(f"{path} is locked" + (f" by pid {owner}" if owner else ""))
        self.path = path
        self.owner = owner


class ExclusiveFileLock:
    """`acquire()` raises `LockHeld` at once when another process holds the lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pid_path = path.with_name(path.name + ".pid")
        # thread_local=False: the run's threads share the one hold of the process
        self._lock = filelock.FileLock(path, mode=0o600, thread_local=False)

    @property
    def held(self) -> bool:
        return self._lock.is_locked

    def acquire(self, pid: int) -> None:
        try:
            self._lock.acquire(timeout=0)
        except filelock.Timeout:
            raise LockHeld(self.path, self.owner()) from None
        with contextlib.suppress(OSError):  # the pid only improves a message
            write_atomic(self.pid_path, f"{pid}\n".encode())

    def release(self) -> None:
        if not self._lock.is_locked:
            return
        with contextlib.suppress(OSError):
            self.pid_path.unlink()
        self._lock.release(force=True)

    def owner(self) -> int | None:
        try:
            text = self.pid_path.read_text(encoding="ascii", errors="replace").strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None
