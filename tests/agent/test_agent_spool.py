"""The spool: wiped at start-up (nothing outside touched); sealed, private, bounded files."""

from __future__ import annotations

import logging
import os
import re
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.encode import Segment
from agent.errors import SpoolError
from agent.spool import Spool, wipe

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


def test_sealed_files_are_private_random_named_and_unreadable(tmp_path: Path) -> None:
    wipe(tmp_path / "spool")
    sp = Spool(tmp_path / "spool")
    seg = segment(4)
    entry = sp.put("rec-abc", seg)
    assert entry is not None
    files = list((tmp_path / "spool").iterdir())
    assert files == [entry.path]
    assert mode(entry.path) == 0o600
    assert re.fullmatch(r"[0-9a-f]{32}", entry.path.name)  # says nothing about the content
    blob = entry.path.read_bytes()
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
    names = {e.path.name for e in (sp.put("r", segment(i)) for i in range(20)) if e}
    assert len(names) == 20
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # atomic writes


def test_associated_data_binds_recording_and_seq(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    a, b = sp.put("rec-1", segment(1)), sp.put("rec-1", segment(2))
    assert a is not None
    assert b is not None
    a_blob = a.path.read_bytes()
    a.path.write_bytes(b.path.read_bytes())  # swap one sealed file for another
    with pytest.raises(SpoolError, match="fails authentication"):
        sp.load(a)
    a.path.write_bytes(a_blob[:-1] + bytes([a_blob[-1] ^ 1]))  # flip one bit
    with pytest.raises(SpoolError, match="fails authentication"):
        sp.load(a)
    a.path.write_bytes(a_blob)
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
    assert entries[0] is not None
    assert not entries[0].path.exists()
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
