"""Private files, created and replaced safely on every platform.

POSIX: a new file is opened `O_EXCL | O_NOFOLLOW | O_CLOEXEC` with mode 0600 (re-applied with
`fchmod`, whatever the umask did), directories are 0700, a file this agent reads back must be
a regular file of this user that nobody else may read or write, and a replacement is fsynced
with its directory.

Windows has no `O_NOFOLLOW`, `O_CLOEXEC`, `fchmod` or uid: descriptors are not inherited by
child processes (Python's default, PEP 446), `O_BINARY` keeps the bytes as written, and the
files live under `%LOCALAPPDATA%`, whose ACL admits only the user, SYSTEM and the
administrators. The mode and owner checks are POSIX only; the symlink check uses `lstat`
there. `os.replace` is atomic over an existing file on both (`os.rename` is not, on Windows).

This module and the rest of `agent.platform` are the only places that name POSIX-only or
Windows-only APIs (tests/agent/test_agent_portable.py checks it over the AST).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import sys
from pathlib import Path

POSIX = sys.platform != "win32"
NOFOLLOW: int = getattr(os, "O_NOFOLLOW", 0)
CLOEXEC: int = getattr(os, "O_CLOEXEC", 0)
BINARY: int = getattr(os, "O_BINARY", 0)
_DIRECTORY: int = getattr(os, "O_DIRECTORY", 0)

Bytes = bytes | bytearray | memoryview


class PrivateFileError(OSError):
    """A file or directory that must be this user's alone is not (the message says why)."""


def create_new(path: Path, mode: int = 0o600) -> int:
    """A descriptor for writing to `path`, which must not exist yet (never follows a link)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW | CLOEXEC | BINARY, mode)
    if sys.platform != "win32":
        try:
            os.fchmod(fd, mode)  # whatever the umask did
        except OSError:
            os.close(fd)
            raise
    return fd


def open_for_lock(path: Path, mode: int = 0o600) -> int:
    """A read-write descriptor on `path`, created if missing (never follows a link)."""
    return os.open(path, os.O_RDWR | os.O_CREAT | NOFOLLOW | CLOEXEC | BINARY, mode)


def open_read(path: Path) -> int:
    """A read-only descriptor on `path` (a symlink is refused where the OS can tell)."""
    if not POSIX and path.is_symlink():
        raise PrivateFileError(f"{path} is a symbolic link")
    return os.open(path, os.O_RDONLY | NOFOLLOW | CLOEXEC | BINARY)


def write_all(fd: int, payload: Bytes) -> None:
    view = memoryview(payload)
    while view:
        view = view[os.write(fd, view) :]


def write_atomic(path: Path, payload: Bytes, *, durable: bool = False) -> None:
    """Replace (or create) `path` with `payload`, mode 0600, all or nothing.

    The bytes go to a new hidden file beside `path` first, which is then moved over it; an
    `OSError` leaves `path` as it was and no temporary file behind. `durable` also fsyncs the
    file and its directory, so the new content survives a power cut.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = create_new(tmp)
        try:
            write_all(fd, payload)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if durable:
        fsync_dir(path.parent)


def replace(source: Path, target: Path) -> None:
    """Move `source` over `target` atomically, replacing it if it exists (every OS)."""
    os.replace(source, target)


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (POSIX; a no-op where directories cannot be opened)."""
    if not POSIX:
        return
    try:
        fd = os.open(path, os.O_RDONLY | _DIRECTORY | CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory; the rename is still done
    finally:
        os.close(fd)


def private_problem(st: os.stat_result, path: Path, holds: str) -> str | None:
    """Why the file `st` describes may not be trusted with `holds`, or None when it may."""
    if not stat.S_ISREG(st.st_mode):
        return f"{path} is not a regular file"
    if sys.platform == "win32":
        return None  # %LOCALAPPDATA%'s ACL, see above
    else:
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            return (
                f"{path} has mode {mode:04o}; it holds {holds} and must not be "
                f"accessible to others: run 'chmod 600 {path}'"
            )
        if st.st_uid != os.geteuid():
            return f"{path} belongs to another user (uid {st.st_uid})"
        return None


def make_private_dir(path: Path) -> None:
    """Create `path` (and parents) and make the directory itself 0700 (POSIX)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode):
        raise PrivateFileError(f"{path} is not a directory")
    restrict_dir(path, st)


def restrict_dir(path: Path, st: os.stat_result | None = None) -> None:
    """Make the directory `path` 0700 (POSIX; on Windows its ACL is inherited)."""
    if not POSIX:
        return
    if st is None or stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)
