"""The spool: wiped at start-up (nothing outside touched); sealed, private, bounded files;
sealed entries kept in RAM, within their own budget, when the disk refuses them."""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent.encode import Segment
from agent.errors import SpoolError
from agent.spool import Spool, SpoolEntry, wipe

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    out = tmp_path / "outside"
    (out / "deep").mkdir(parents=True)
    (out / "precious.txt").write_text("keep me")
    (out / "deep" / "also.txt").write_text("keep me too")
    return out


def test_creates_a_missing_spool_dir(tmp_path: Path) -> None:
    spool = tmp_path / "a" / "spool"
    assert wipe(spool) == 0
    assert spool.is_dir()
    assert mode(spool) == 0o700


def test_removes_files_and_nested_dirs_but_not_symlink_targets(
    tmp_path: Path, outside: Path
) -> None:
    spool = tmp_path / "spool"
    (spool / "sub" / "deeper").mkdir(parents=True)
    (spool / "seg-1.bin").write_bytes(b"x" * 100)
    (spool / ".hidden").write_bytes(b"x")
    (spool / "sub" / "deeper" / "seg-2.bin").write_bytes(b"y")
    (spool / "link-to-dir").symlink_to(outside)
    (spool / "sub" / "link-to-file").symlink_to(outside / "precious.txt")
    (spool / "dangling").symlink_to(tmp_path / "nowhere")
    locked = spool / "sub" / "locked"
    locked.mkdir()
    (locked / "f").write_bytes(b"z")
    locked.chmod(0o500)  # a read-only directory left behind

    removed = wipe(spool)

    assert list(spool.iterdir()) == []
    assert removed == 10
    assert mode(spool) == 0o700
    assert (outside / "precious.txt").read_text() == "keep me"
    assert (outside / "deep" / "also.txt").read_text() == "keep me too"


def test_spool_dir_that_is_a_symlink_is_replaced_not_followed(
    tmp_path: Path, outside: Path
) -> None:
    spool = tmp_path / "spool"
    spool.symlink_to(outside, target_is_directory=True)
    wipe(spool)
    assert spool.is_dir()
    assert not spool.is_symlink()
    assert list(spool.iterdir()) == []
    assert (outside / "precious.txt").exists()
    assert (outside / "deep" / "also.txt").exists()


def test_spool_path_that_is_a_file_is_replaced(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.write_bytes(b"stale")
    wipe(spool)
    assert spool.is_dir()


def test_loose_spool_dir_is_tightened(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    os.chmod(spool, 0o777)  # noqa: S103 (the loose mode under test)
    wipe(spool)
    assert mode(spool) == 0o700


# -- the sealed spool -------------------------------------------------------------------


def segment(seq: int, size: int = 1000, fill: bytes = b"") -> Segment:
    data = (fill or f"plain-segment-{seq}|".encode()) * (size // 16 + 1)
    return Segment(
        seq=seq, data=data[:size], started_at=NOW, duration_ms=1000, frames=3, width=64,
        height=48,
    )


def file_of(entry: SpoolEntry | None) -> Path:
    """The sealed file of an entry that must be on disk."""
    assert entry is not None
    assert entry.path is not None
    return entry.path


def test_sealed_files_are_private_random_named_and_unreadable(tmp_path: Path) -> None:
    wipe(tmp_path / "spool")
    sp = Spool(tmp_path / "spool")
    seg = segment(4)
    entry = sp.put("rec-abc", seg)
    assert entry is not None
    files = list((tmp_path / "spool").iterdir())
    assert files == [file_of(entry)]
    assert mode(file_of(entry)) == 0o600
    assert re.fullmatch(r"[0-9a-f]{32}", file_of(entry).name)  # says nothing about the content
    blob = file_of(entry).read_bytes()
    assert b"plain-segment" not in blob
    assert b"rec-abc" not in blob
    assert len(blob) == entry.size == sp.size == seg.size + 32
    loaded = sp.load(entry)
    assert loaded == seg
    assert loaded.data == seg.data
    sp.remove(entry)
    assert list((tmp_path / "spool").iterdir()) == []
    assert (sp.size, len(sp)) == (0, 0)


def test_names_are_random_per_file(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    names = {file_of(sp.put("r", segment(i))).name for i in range(20)}
    assert len(names) == 20
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # atomic writes


def test_associated_data_binds_recording_and_seq(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    a, b = sp.put("rec-1", segment(1)), sp.put("rec-1", segment(2))
    assert a is not None
    assert b is not None
    a_blob = file_of(a).read_bytes()
    file_of(a).write_bytes(file_of(b).read_bytes())  # swap one sealed file for another
    with pytest.raises(SpoolError, match="fails authentication"):
        sp.load(a)
    file_of(a).write_bytes(a_blob[:-1] + bytes([a_blob[-1] ^ 1]))  # flip one bit
    with pytest.raises(SpoolError, match="fails authentication"):
        sp.load(a)
    file_of(a).write_bytes(a_blob)
    assert sp.load(a).data == segment(1).data


def test_a_file_from_another_process_cannot_be_read(tmp_path: Path) -> None:
    """A crashed run's files are unreadable: the key lived only in that process's memory."""
    first = Spool(tmp_path)
    entry = first.put("rec-1", segment(0))
    assert entry is not None
    second = Spool(tmp_path)  # a new run: a new key
    with pytest.raises(SpoolError, match="fails authentication"):
        second.load(entry)


def test_key_never_reaches_disk(tmp_path: Path) -> None:
    key = os.urandom(32)
    sp = Spool(tmp_path, key=key)
    entry = sp.put("rec-1", segment(0))
    assert entry is not None
    assert sp.load(entry).data == segment(0).data
    assert Spool(tmp_path, key=key).load(entry).data == segment(0).data  # the key is all it takes
    for path in tmp_path.rglob("*"):
        assert key not in path.read_bytes()


def test_limit_drops_the_oldest_and_records_the_gap(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sp = Spool(tmp_path, limit=3 * (1000 + 32))
    entries = [sp.put("rec-1", segment(i)) for i in range(3)]
    assert sp.dropped == []
    caplog.set_level(logging.ERROR)
    fourth = sp.put("rec-1", segment(3))
    assert fourth is not None
    assert sp.dropped == [("rec-1", 0)]
    assert [e.seq for e in sp.entries()] == [1, 2, 3]
    assert not file_of(entries[0]).exists()
    assert sp.size == 3 * 1032
    assert "segment 0 of recording rec-1 DROPPED" in caplog.text
    big = sp.put("rec-1", segment(4, size=2000))  # needs two slots
    assert big is not None
    assert sp.dropped == [("rec-1", 0), ("rec-1", 1), ("rec-1", 2)]
    assert [e.seq for e in sp.entries()] == [3, 4]
    assert sp.size <= sp.limit
    assert len(list(tmp_path.iterdir())) == 2


def test_a_segment_larger_than_the_limit_is_dropped_itself(tmp_path: Path) -> None:
    sp = Spool(tmp_path, limit=500)
    assert sp.put("rec-1", segment(0, size=1000)) is None
    assert sp.dropped == [("rec-1", 0)]
    assert list(tmp_path.iterdir()) == []


def test_clear_deletes_everything(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    for i in range(3):
        sp.put("rec-1", segment(i))
    assert [e.seq for e in sp.clear()] == [0, 1, 2]
    assert list(tmp_path.iterdir()) == []
    assert sp.size == 0


# -- when the disk refuses: sealed entries in RAM -----------------------------------------

SEALED = 1000 + 32  # a sealed `segment(i)`


NOT_A_DIR = b"a regular file where the spool directory was"


def refuse(spool_dir: Path) -> None:
    """Make every write into `spool_dir` fail for real (ENOTDIR, root or not): the directory
    (created if missing) is moved aside, files and all, and a regular file takes its place."""
    spool_dir.mkdir(mode=0o700, exist_ok=True)
    spool_dir.rename(spool_dir.with_name("aside"))
    spool_dir.write_bytes(NOT_A_DIR)


def accept(spool_dir: Path) -> None:
    """The disk works again: the directory is back."""
    spool_dir.unlink()
    spool_dir.with_name("aside").rename(spool_dir)


class DiskFull:
    """A disk with `free` bytes left, for writes into one directory: `os.write` there writes
    for real up to that, then fails with ENOSPC as a full disk does (Linux: /proc/self/fd).
    Every other write is passed through untouched."""

    def __init__(self, directory: Path, free: int) -> None:
        self.directory = directory.resolve()
        self.free = free
        self.written = b""  # what reached the directory's files
        self._write = os.write

    def __call__(self, fd: int, data: Any) -> int:
        target = Path(os.readlink(f"/proc/self/fd/{fd}"))
        if target.parent != self.directory:
            return self._write(fd, data)
        if self.free <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        chunk = bytes(data[: self.free])
        n = self._write(fd, chunk)
        self.free -= n
        self.written += chunk[:n]
        return n


OPENED: list[str] | None = None  # set while `opens_under` watches


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if OPENED is not None and event in ("open", "os.rename", "os.remove", "os.listdir"):
        OPENED.append(f"{event} {args[0]}")


sys.addaudithook(_audit)  # inert unless a test watches (audit hooks cannot be removed)


@contextmanager
def opens_under(root: Path) -> Iterator[list[str]]:
    """Every file system access (open, rename, remove, listdir) below `root` meanwhile."""
    global OPENED
    OPENED = []
    seen = OPENED
    try:
        yield seen
    finally:
        OPENED = None
        seen[:] = [line for line in seen if str(root) in line]


def files_under(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_refused_write_keeps_the_sealed_entry_in_ram(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool_dir = tmp_path / "spool"
    refuse(spool_dir)
    sp = Spool(spool_dir, memory_limit=10 * SEALED)
    caplog.set_level(logging.INFO)

    entries = [sp.put("rec-1", segment(i)) for i in range(3)]

    assert all(e is not None and e.in_memory and e.path is None for e in entries)
    assert [e.seq for e in sp.entries()] == [0, 1, 2]  # one FIFO, in order
    assert (len(sp), sp.size) == (3, 3 * SEALED)  # memory entries count like files...
    assert (sp.memory_segments, sp.memory_size, sp.disk_size) == (3, 3 * SEALED, 0)  # ...split
    assert files_under(tmp_path) == {spool_dir: NOT_A_DIR}  # nothing reached the disk
    # warned once, naming the reason and the budget
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "Not a directory" in warnings[0]
    assert "held in RAM until uploads resume or the budget of 10.1 KiB" in warnings[0]
    assert sp.memory_reason == "Not a directory"
    assert sp.fallbacks == 1
    # the same sealed blob as a file would hold, bound to its recording and seq
    first = entries[0]
    assert first is not None
    blob = first.blob or b""
    assert len(blob) == first.size == SEALED
    assert b"plain-segment" not in blob
    assert sp.load(first) == segment(0)
    assert sp.load(first).data == segment(0).data
    swapped = SpoolEntry(
        recording_id="rec-1", seq=1, path=None, size=first.size, segment=first.segment,
        blob=blob,
    )
    with pytest.raises(SpoolError, match="fails authentication"):
        sp.load(swapped)
    # removal frees the RAM
    sp.remove(first)
    assert first.blob is None
    assert (len(sp), sp.size, sp.memory_segments) == (2, 2 * SEALED, 2)
    with pytest.raises(SpoolError, match="no longer in the spool"):
        sp.load(first)


def test_a_full_disk_leaves_no_residue_and_the_entry_in_ram(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    if not Path("/proc/self/fd").is_dir():
        pytest.fail("this test needs /proc/self/fd (Linux procfs) to tell where a write goes")
    spool_dir = tmp_path / "spool"
    wipe(spool_dir)
    disk = DiskFull(spool_dir, free=SEALED + 400)  # room for one sealed segment and a bit
    monkeypatch.setattr(os, "write", disk)
    sp = Spool(spool_dir)
    caplog.set_level(logging.WARNING)

    on_disk = sp.put("rec-1", segment(0))
    in_ram = sp.put("rec-1", segment(1))  # 400 bytes written, then ENOSPC

    assert on_disk is not None
    assert on_disk.path is not None
    assert in_ram is not None
    assert in_ram.in_memory
    assert "No space left on device" in caplog.text
    assert sp.memory_reason == "No space left on device"
    assert list(spool_dir.iterdir()) == [on_disk.path]  # the half-written temp file is gone
    assert len(disk.written) == SEALED + 400
    assert b"plain-segment" not in disk.written  # and what it held was sealed
    assert [e.seq for e in sp.entries()] == [0, 1]
    assert sp.load(on_disk).data == segment(0).data
    assert sp.load(in_ram).data == segment(1).data


def test_nothing_of_a_ram_entry_touches_the_disk(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    refuse(spool_dir)
    sp = Spool(spool_dir, memory_limit=2 * SEALED)
    with opens_under(tmp_path) as opened:
        kept = [sp.put("rec-1", segment(i)) for i in range(2)]
    # only the attempts to create the temp files (and to clean them up), each refused
    assert len(opened) == 4
    assert all(line.endswith(".tmp") for line in opened)
    assert files_under(tmp_path) == {spool_dir: NOT_A_DIR}
    accept(spool_dir)  # the disk works again: still, a RAM entry never goes near it

    with opens_under(tmp_path) as opened:
        a, b = kept
        assert a is not None
        assert b is not None
        assert sp.load(a).data == segment(0).data
        sp.remove(a)
        assert sp.load(b).data == segment(1).data
        gone = sp.clear()
    assert opened == []
    assert gone == [b]
    assert b.blob is None
    assert list(spool_dir.iterdir()) == []

    # dropping a RAM entry at its budget does not touch the disk either: the only accesses
    # are the new segment's refused attempt at a temp file
    refuse(spool_dir)
    for i in range(2, 4):
        sp.put("rec-1", segment(i))
    with opens_under(tmp_path) as opened:
        sp.put("rec-1", segment(4))
    assert sp.dropped == [("rec-1", 2)]
    assert len(opened) == 2
    assert opened[0].startswith("open ")
    assert opened[0].endswith(".tmp")
    assert opened[1] == opened[0].replace("open ", "os.remove ")
    assert files_under(tmp_path) == {spool_dir: NOT_A_DIR}


def test_when_the_disk_works_again_new_entries_go_to_disk(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool_dir = tmp_path / "spool"
    refuse(spool_dir)
    sp = Spool(spool_dir, memory_limit=10 * SEALED)
    caplog.set_level(logging.WARNING)
    sp.put("rec-1", segment(0))
    sp.put("rec-1", segment(1))
    accept(spool_dir)

    back = sp.put("rec-1", segment(2))

    assert back is not None
    assert back.path is not None
    assert list(spool_dir.iterdir()) == [back.path]
    assert sp.memory_reason is None
    assert "the disk takes sealed segments again; 2 segment(s) stay in RAM" in caplog.text
    assert [(e.seq, e.in_memory) for e in sp.entries()] == [(0, True), (1, True), (2, False)]
    assert (sp.size, sp.disk_size, sp.memory_size) == (3 * SEALED, SEALED, 2 * SEALED)
    assert [sp.load(e).data for e in sp.entries()] == [segment(i).data for i in range(3)]

    # it refuses again: a new fallback, warned again
    refuse(spool_dir)
    again = sp.put("rec-1", segment(3))
    assert again is not None
    assert again.in_memory
    assert sp.fallbacks == 2
    assert caplog.text.count("held in RAM until uploads resume") == 2
    assert [(e.seq, e.in_memory) for e in sp.entries()] == [
        (0, True), (1, True), (2, False), (3, True)
    ]


def test_the_ram_budget_drops_the_oldest_ram_entries_and_records_the_gaps(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool_dir = tmp_path / "spool"
    wipe(spool_dir)
    sp = Spool(spool_dir, limit=10 * SEALED, memory_limit=2 * SEALED)
    files = [sp.put("rec-1", segment(i)) for i in range(2)]  # 0, 1 on disk
    refuse(spool_dir)
    for i in range(2, 4):
        sp.put("rec-1", segment(i))  # 2, 3 in RAM: the budget is full
    assert sp.dropped == []
    caplog.set_level(logging.ERROR)

    sp.put("rec-1", segment(4))

    # the oldest RAM entry goes; files older than it stay (dropping them frees no RAM)
    assert sp.dropped == [("rec-1", 2)]
    assert sp.dropped_in_memory == {("rec-1", 2)}
    assert "spool RAM budget: segment 2 of recording rec-1 DROPPED" in caplog.text
    assert [e.seq for e in sp.entries()] == [0, 1, 3, 4]
    assert sp.memory_size == 2 * SEALED <= sp.memory_limit
    big = sp.put("rec-1", segment(5, size=2000))  # needs both RAM slots
    assert big is not None
    assert sp.dropped == [("rec-1", 2), ("rec-1", 3), ("rec-1", 4)]
    assert [e.seq for e in sp.entries()] == [0, 1, 5]
    assert sp.memory_size <= sp.memory_limit
    accept(spool_dir)
    assert {f.path for f in files if f is not None} == set(spool_dir.iterdir())  # still there
    assert sp.disk_size == 2 * SEALED
    assert [sp.load(e).data for e in sp.entries()] == [segment(i).data for i in (0, 1)] + [
        segment(5, size=2000).data
    ]


def test_a_refused_segment_larger_than_the_ram_budget_raises(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    refuse(spool_dir)
    sp = Spool(spool_dir, memory_limit=SEALED)
    kept = sp.put("rec-1", segment(0))
    with pytest.raises(SpoolError, match=r"Not a directory.*exceeds the spool's RAM budget"):
        sp.put("rec-1", segment(1, size=2000))
    assert sp.entries() == [kept]  # nothing was dropped for it
    assert sp.dropped == []


def test_clear_drops_ram_entries_with_the_files(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    wipe(spool_dir)
    sp = Spool(spool_dir)
    sp.put("rec-1", segment(0))
    refuse(spool_dir)
    sp.put("rec-1", segment(1))
    sp.put("rec-1", segment(2))
    accept(spool_dir)
    assert (sp.memory_segments, len(list(spool_dir.iterdir()))) == (2, 1)

    gone = sp.clear()

    assert [(e.seq, e.in_memory) for e in gone] == [(0, False), (1, True), (2, True)]
    assert all(e.blob is None for e in gone)
    assert (len(sp), sp.size, sp.memory_size, sp.memory_segments) == (0, 0, 0, 0)
    assert files_under(tmp_path) == {}
