"""The spool: sealed segments on disk (or in RAM), only while uploads fail (DESIGN G7).

Segments are encoded and uploaded from memory. When an upload fails, the segment is written
here, sealed with AES-256-GCM under a key generated when the `Spool` is made and held only in
this process's memory (never written anywhere). Each file has a random name, is written
atomically (a 0600 temp file, then a rename) and is deleted as soon as its upload succeeds.
The associated data binds the ciphertext to its recording id and sequence number, so a file
cannot be passed off as another segment. The file holds no metadata: what the uploader needs
(size, times, frame count) stays in memory with the key.

When the disk refuses the file (no space left, a read-only or vanished directory, a quota:
any OSError), the same sealed blob is kept in RAM instead, in the same FIFO, so nothing is
lost while the process lives: order, loading, removal and the drop-oldest policy are the same
for both kinds of entries. The first fallback logs a warning naming the reason; every `put`
tries the disk again first, so once the disk takes writes again new entries go back to it
(entries already in RAM stay there until uploaded). A memory entry never touches the disk
(a failed write may have left part of the *sealed* blob in a temp file, which is removed at
once). In-memory entries die with the process like the key that seals them.

Two budgets bound the footprint: `limit` (default 2 GiB) for the sealed files on disk and
`memory_limit` (default 256 MiB) for the sealed blobs in RAM. At either the policy is *drop
the oldest*: the oldest entries of that budget (on disk for the disk limit, in RAM for the
RAM budget) are deleted until the new one fits, each drop is logged as an error and kept in
`Spool.dropped` as a gap (recording id, seq) to report (`Spool.dropped_in_memory` says which
of them the RAM budget dropped). A segment larger than the disk limit is itself dropped, as
a gap. A segment the disk refuses and that alone exceeds the RAM budget raises `SpoolError`:
the caller reports it as lost.

`size` and `len()` count every entry waiting, on disk and in RAM (the backlog the status and
heartbeat report); `disk_size`, `memory_size` and `memory_segments` split it.

Whatever a previous run left is wiped at start-up (`wipe`): a sealed file from a crashed or
killed run cannot be read anyway, its key died with that process. Symbolic links are removed
as links: nothing outside the spool directory is ever touched.
"""

from __future__ import annotations

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
from agent.platform.files import restrict_dir, write_atomic

log = logging.getLogger(__name__)


def _remove_tree(path: Path) -> int:
    """Remove the directory `path` (not a symlink) and everything below it; returns a count."""
    removed = 0
    # make sure we may list and delete inside it, whatever mode a previous run left
    restrict_dir(path)
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
            restrict_dir(spool_dir)
            with os.scandir(spool_dir) as entries:
                children = list(entries)
            for entry in children:
                removed += _remove_entry(Path(entry.path))
        restrict_dir(spool_dir)
    except OSError as exc:
        raise SpoolError(
            f"cannot wipe the spool directory {spool_dir}: {exc.strerror or exc}"
        ) from exc
    if removed:
        log.info("spool: removed %d entries left by a previous run", removed)
    return removed


DEFAULT_LIMIT = 2 * 1024**3  # bytes of sealed segments on disk
DEFAULT_MEMORY_LIMIT = 256 * 1024**2  # bytes of sealed segments in RAM, when the disk refuses
_MAGIC = b"BRS1"  # blob format: magic, 12-byte nonce, AES-256-GCM ciphertext + tag
_NONCE = 12
_OVERHEAD = len(_MAGIC) + _NONCE + 16


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _aad(recording_id: str, seq: int) -> bytes:
    return b"bucketreel-spool-v1\0" + recording_id.encode() + b"\0" + str(seq).encode()


@dataclass(slots=True, kw_only=True, eq=False)
class SpoolEntry:
    """A sealed segment, on disk (`path`) or in RAM (`blob`); its metadata and the key stay
    in memory. Entries compare by identity."""

    recording_id: str
    seq: int
    path: Path | None  # the sealed file; None for an entry held in RAM
    size: int  # bytes of the sealed blob, on disk or in RAM
    segment: Segment = field(repr=False)  # the segment without its bytes (data=b"")
    blob: bytes | None = field(default=None, repr=False)  # the sealed blob of a RAM entry

    @property
    def in_memory(self) -> bool:
        return self.path is None


class Spool:
    """Sealed segments waiting for upload, oldest first. Thread safe."""

    def __init__(
        self,
        directory: Path,
        *,
        limit: int = DEFAULT_LIMIT,
        memory_limit: int = DEFAULT_MEMORY_LIMIT,
        key: bytes | None = None,
    ) -> None:
        """`key` is for tests only; by default a fresh random key is made here."""
        if limit < 0:
            raise ValueError("the spool limit must not be negative")
        if memory_limit < 0:
            raise ValueError("the spool's RAM budget must not be negative")
        self.directory = directory
        self.limit = limit
        self.memory_limit = memory_limit
        # the key lives in this object only: never logged, never written
        self._aead = AESGCM(key if key is not None else AESGCM.generate_key(bit_length=256))
        self._entries: deque[SpoolEntry] = deque()
        self._disk_size = 0
        self._memory_size = 0
        self._memory_segments = 0
        self._lock = threading.Lock()
        self.dropped: list[tuple[str, int]] = []  # gaps: segments a limit made us drop
        self.dropped_in_memory: set[tuple[str, int]] = set()  # those the RAM budget dropped
        self.memory_reason: str | None = None  # why the disk refused the latest write, if it did
        self.fallbacks = 0  # how many times the disk began refusing (RAM fallbacks started)

    @property
    def size(self) -> int:
        """Bytes of sealed segments waiting now, on disk and in RAM."""
        with self._lock:
            return self._disk_size + self._memory_size

    @property
    def disk_size(self) -> int:
        """Bytes of sealed segments on disk now."""
        with self._lock:
            return self._disk_size

    @property
    def memory_size(self) -> int:
        """Bytes of sealed segments held in RAM now (the disk refused them)."""
        with self._lock:
            return self._memory_size

    @property
    def memory_segments(self) -> int:
        """How many of the entries are held in RAM."""
        with self._lock:
            return self._memory_segments

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
        """Seal `segment` to disk (or to RAM if the disk refuses), behind every entry.

        The file is written first; then the oldest files are dropped if the spool is over its
        limit, so a write that fails never costs an older segment. Returns None (and records
        the gap) when the segment alone is larger than the limit. Raises SpoolError when the
        disk refuses it and it alone is larger than the RAM budget.
        """
        sealed_size = segment.size + _OVERHEAD
        with self._lock:
            if sealed_size > self.limit:
                self._record_drop(recording_id, segment.seq, "it alone exceeds", memory=False)
                return None
            nonce = secrets.token_bytes(_NONCE)
            sealed = self._aead.encrypt(nonce, segment.data, _aad(recording_id, segment.seq))
            blob = _MAGIC + nonce + sealed
            del sealed  # one copy of the segment's size, not two
            bare = dataclasses.replace(segment, data=b"")
            try:
                path = self._write(blob)
            except OSError as exc:
                entry = self._keep_in_memory(recording_id, bare, blob, exc)
                total, budget, where = self._memory_size, self.memory_limit, "RAM"
            else:
                if self.memory_reason is not None:
                    log.warning(
                        "spool: the disk takes sealed segments again; %d segment(s) stay in "
                        "RAM until uploaded",
                        self._memory_segments,
                    )
                    self.memory_reason = None
                while self._disk_size + sealed_size > self.limit:
                    self._drop_oldest(memory=False)
                entry = SpoolEntry(
                    recording_id=recording_id, seq=segment.seq, path=path, size=sealed_size,
                    segment=bare,
                )
                self._entries.append(entry)
                self._disk_size += sealed_size
                total, budget, where = self._disk_size, self.limit, "disk"
        log.info(
            "spool: segment %d of recording %s sealed to %s (%d bytes; %s %d of %d)",
            segment.seq, recording_id, where, sealed_size, where, total, budget,
        )
        return entry

    def load(self, entry: SpoolEntry) -> Segment:
        """The segment of `entry`, decrypted and checked."""
        if entry.path is None:
            blob = entry.blob
            if blob is None:
                raise SpoolError(f"spooled segment {entry.seq} is no longer in the spool")
        else:
            try:
                blob = entry.path.read_bytes()
            except OSError as exc:
                raise SpoolError(
                    f"cannot read a spooled segment: {exc.strerror or exc}"
                ) from exc
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
            self._forget(entry)

    def clear(self) -> list[SpoolEntry]:
        """Delete every entry, on disk and in RAM; returns what was deleted (oldest first)."""
        with self._lock:
            gone = list(self._entries)
            self._entries.clear()
            for entry in gone:
                self._forget(entry)
        return gone

    # -- under the lock ---------------------------------------------------------------------

    def _keep_in_memory(
        self, recording_id: str, bare: Segment, blob: bytes, exc: OSError
    ) -> SpoolEntry:
        reason = exc.strerror or str(exc)
        size = len(blob)
        if size > self.memory_limit:
            raise SpoolError(
                f"cannot write to the spool ({reason}) and the segment alone ({size} bytes) "
                f"exceeds the spool's RAM budget of {self.memory_limit} bytes"
            ) from exc
        if self.memory_reason is None:
            self.fallbacks += 1
            log.warning(
                "spool: cannot write to %s (%s); sealed segments are held in RAM until "
                "uploads resume or the budget of %s is reached (then the oldest are "
                "dropped)",
                self.directory, reason, human_size(self.memory_limit),
            )
        self.memory_reason = reason
        while self._memory_size + size > self.memory_limit:
            self._drop_oldest(memory=True)
        entry = SpoolEntry(
            recording_id=recording_id, seq=bare.seq, path=None, size=size, segment=bare,
            blob=blob,
        )
        self._entries.append(entry)
        self._memory_size += size
        self._memory_segments += 1
        return entry

    def _drop_oldest(self, *, memory: bool) -> None:
        """Drop the oldest entry held on disk (memory=False) or in RAM (memory=True)."""
        old = next(e for e in self._entries if e.in_memory == memory)
        self._entries.remove(old)
        self._forget(old)
        self._record_drop(old.recording_id, old.seq, "the spool reached", memory=memory)

    def _forget(self, entry: SpoolEntry) -> None:
        """Account for `entry` leaving the FIFO and delete its bytes."""
        if entry.path is None:
            if entry.blob is not None:
                entry.blob = None
                self._memory_size -= entry.size
                self._memory_segments -= 1
            return
        self._disk_size -= entry.size
        try:
            entry.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.error("spool: cannot delete %s: %s", entry.path.name, exc.strerror or exc)

    def _record_drop(self, recording_id: str, seq: int, why: str, *, memory: bool) -> None:
        self.dropped.append((recording_id, seq))
        if memory:
            self.dropped_in_memory.add((recording_id, seq))
            log.error(
                "spool RAM budget: segment %d of recording %s DROPPED (%s the RAM budget of "
                "%d bytes while the disk refuses the spool; policy: drop the oldest) - a gap "
                "in the recording",
                seq, recording_id, why, self.memory_limit,
            )
            return
        log.error(
            "spool limit: segment %d of recording %s DROPPED (%s the limit of %d bytes; "
            "policy: drop the oldest) - a gap in the recording",
            seq, recording_id, why, self.limit,
        )

    def _write(self, blob: bytes) -> Path:
        """Write `blob` to a new file atomically; an OSError leaves no file behind."""
        final = self.directory / secrets.token_hex(16)
        write_atomic(final, blob)
        return final
