"""Spool wipe at start-up: everything below goes, nothing outside is touched."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from agent.spool import wipe


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
