"""The spool: sealed segments on disk, only while uploads fail (DESIGN G7).

Segments are encoded and uploaded from memory. When an upload fails, the segment is written
here, sealed with AES-256-GCM under a key generated when the `Spool` is made and held only in
this process's memory (never written anywhere). Each file has a random name, is written
atomically (a 0600 temp file, then a rename) and is deleted as soon as its upload succeeds.
The associated data binds the ciphertext to its recording id and sequence number, so a file
cannot be passed off as another segment. The file holds no metadata: what the uploader needs
(size, times, frame count) stays in memory with the key.

The spool has a size limit (default 2 GiB). At the limit the policy is *drop the oldest*:
the oldest sealed segments are deleted until the new one fits, each drop is logged as an
error and kept in `Spool.dropped` as a gap (recording id, seq) to report.

Whatever a previous run left is wiped at start-up (`wipe`): a sealed file from a crashed or
killed run cannot be read anyway, its key died with that process. Symbolic links are removed
as links: nothing outside the spool directory is ever touched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
import stat
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agent.encode import Segment
from agent.errors import SpoolError

log = logging.getLogger(__name__)


def _remove_tree(path: Path) -> int:
    """Remove the directory `path` (not a symlink) and everything below it; returns a count."""
    removed = 0
    # make sure we may list and delete inside it, whatever mode a previous run left
    os.chmod(path, 0o700)
    with os.scandir(path) as entries:
        children = list(entries)
    for entry in children:
        removed += _remove_entry(Path(entry.path))
    os.rmdir(path)
    return removed + 1


def _remove_entry(path: Path) -> int:
    st = path.lstat()  # never follows a symlink
    if stat.S_ISDIR(st.st_mode):
        return _remove_tree(path)
    path.unlink()  # files, symlinks (the link itself), sockets, fifos
    return 1


def wipe(spool_dir: Path) -> int:
    """Empty `spool_dir` (create it if missing) and leave it as a 0700 directory.

    Returns how many entries were removed. A symlink or a file where the directory should be
    is removed and replaced by a real directory.
    """
    try:
        removed = 0
        try:
            st = spool_dir.lstat()
        except FileNotFoundError:
            st = None
        if st is not None and not stat.S_ISDIR(st.st_mode):
            spool_dir.unlink()  # a symlink (to anywhere) or a stray file: not our directory
            removed += 1
            st = None
        if st is None:
            spool_dir.mkdir(mode=0o700, parents=True)
        else:
            os.chmod(spool_dir, 0o700)
            with os.scandir(spool_dir) as entries:
                children = list(entries)
            for entry in children:
                removed += _remove_entry(Path(entry.path))
        os.chmod(spool_dir, 0o700)
    except OSError as exc:
        raise SpoolError(
            f"cannot wipe the spool directory {spool_dir}: {exc.strerror or exc}"
        ) from exc
    if removed:
        log.info("spool: removed %d entries left by a previous run", removed)
    return removed


DEFAULT_LIMIT = 2 * 1024**3  # bytes of sealed segments on disk
_MAGIC = b"BRS1"  # file format: magic, 12-byte nonce, AES-256-GCM ciphertext + tag
_NONCE = 12
_OVERHEAD = len(_MAGIC) + _NONCE + 16


def _aad(recording_id: str, seq: int) -> bytes:
    return b"bucketreel-spool-v1\0" + recording_id.encode() + b"\0" + str(seq).encode()


@dataclass(slots=True, kw_only=True)
class SpoolEntry:
    """A sealed segment on disk; its metadata (and the key) stay in memory."""

    recording_id: str
    seq: int
    path: Path
    size: int  # bytes on disk
    segment: Segment = field(repr=False)  # the segment without its bytes (data=b"")


class Spool:
    """Sealed segments waiting for upload, oldest first. Thread safe."""

    def __init__(
        self, directory: Path, *, limit: int = DEFAULT_LIMIT, key: bytes | None = None
    ) -> None:
        """`key` is for tests only; by default a fresh random key is made here."""
        if limit < 0:
            raise ValueError("the spool limit must not be negative")
        self.directory = directory
        self.limit = limit
        # the key lives in this object only: never logged, never written
        self._aead = AESGCM(key if key is not None else AESGCM.generate_key(bit_length=256))
        self._entries: deque[SpoolEntry] = deque()
        self._size = 0
        self._lock = threading.Lock()
        self.dropped: list[tuple[str, int]] = []  # gaps: segments the limit made us drop

    @property
    def size(self) -> int:
        """Bytes of sealed segments on disk now."""
        with self._lock:
            return self._size

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def entries(self) -> list[SpoolEntry]:
        with self._lock:
            return list(self._entries)

    def oldest(self) -> SpoolEntry | None:
        with self._lock:
            return self._entries[0] if self._entries else None

    def put(self, recording_id: str, segment: Segment) -> SpoolEntry | None:
        """Seal `segment` to disk, behind every segment already spooled.

        Drops the oldest segments first if the new one would not fit under the limit. Returns
        None (and records the gap) when the segment alone is larger than the limit.
        """
        sealed_size = segment.size + _OVERHEAD
        with self._lock:
            if sealed_size > self.limit:
                self._record_drop(recording_id, segment.seq, "it alone exceeds")
                return None
            while self._entries and self._size + sealed_size > self.limit:
                old = self._entries.popleft()
                self._size -= old.size
                self._unlink(old)
                self._record_drop(old.recording_id, old.seq, "the spool reached")
            nonce = secrets.token_bytes(_NONCE)
            sealed = self._aead.encrypt(nonce, segment.data, _aad(recording_id, segment.seq))
            path = self._write(_MAGIC + nonce + sealed)
            entry = SpoolEntry(
                recording_id=recording_id,
                seq=segment.seq,
                path=path,
                size=sealed_size,
                segment=dataclasses.replace(segment, data=b""),
            )
            self._entries.append(entry)
            self._size += sealed_size
            total = self._size
        log.info(
            "spool: segment %d of recording %s sealed to disk (%d bytes; spool %d of %d)",
            segment.seq, recording_id, sealed_size, total, self.limit,
        )
        return entry

    def load(self, entry: SpoolEntry) -> Segment:
        """The segment of `entry`, decrypted and checked."""
        try:
            blob = entry.path.read_bytes()
        except OSError as exc:
            raise SpoolError(f"cannot read a spooled segment: {exc.strerror or exc}") from exc
        if not blob.startswith(_MAGIC) or len(blob) < _OVERHEAD:
            raise SpoolError(f"spooled segment {entry.seq} is not a spool file")
        nonce, sealed = blob[len(_MAGIC) : len(_MAGIC) + _NONCE], blob[len(_MAGIC) + _NONCE :]
        try:
            data = self._aead.decrypt(nonce, sealed, _aad(entry.recording_id, entry.seq))
        except InvalidTag:
            raise SpoolError(
                f"spooled segment {entry.seq} fails authentication (altered or swapped)"
            ) from None
        return dataclasses.replace(entry.segment, data=data)

    def remove(self, entry: SpoolEntry) -> None:
        """Delete `entry` (after its upload succeeded, or when giving it up)."""
        with self._lock:
            try:
                self._entries.remove(entry)
            except ValueError:
                return  # already dropped
            self._size -= entry.size
            self._unlink(entry)

    def clear(self) -> list[SpoolEntry]:
        """Delete every entry; returns what was deleted (oldest first)."""
        with self._lock:
            gone = list(self._entries)
            self._entries.clear()
            self._size = 0
            for entry in gone:
                self._unlink(entry)
        return gone

    def _record_drop(self, recording_id: str, seq: int, why: str) -> None:
        self.dropped.append((recording_id, seq))
        log.error(
            "spool limit: segment %d of recording %s DROPPED (%s the limit of %d bytes; "
            "policy: drop the oldest) - a gap in the recording",
            seq, recording_id, why, self.limit,
        )

    def _write(self, blob: bytes) -> Path:
        name = secrets.token_hex(16)
        tmp = self.directory / f".{name}.tmp"
        final = self.directory / name
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(tmp, flags, 0o600)
            try:
                view = memoryview(blob)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
            finally:
                os.close(fd)
            os.rename(tmp, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise SpoolError(f"cannot write to the spool: {exc.strerror or exc}") from exc
        return final

    @staticmethod
    def _unlink(entry: SpoolEntry) -> None:
        try:
            entry.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.error("spool: cannot delete %s: %s", entry.path.name, exc.strerror or exc)
