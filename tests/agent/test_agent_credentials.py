"""The device credential file: 0600, atomic replacement, refusal of unsafe files."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.credentials import CredentialStore, DeviceCredential, load, save
from agent.errors import CredentialError
from shared.wire import TokenPair

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")


def credential(refresh: str = "rt-1") -> DeviceCredential:
    pair = TokenPair(device_id="dev-1", access_token="at-1", refresh_token=refresh, expires_in=900)
    return DeviceCredential.from_token_pair("https://broker.example", pair, now=NOW)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_round_trip_and_expiry() -> None:
    cred = credential()
    assert cred.access_expires_at == NOW + timedelta(seconds=900)
    assert DeviceCredential.from_json(json.loads(json.dumps(cred.to_json()))) == cred
    assert not cred.expires_within(60, now=NOW)
    assert cred.expires_within(60, now=NOW + timedelta(seconds=841))


def test_repr_hides_tokens() -> None:
    text = repr(credential())
    assert "dev-1" in text
    assert "at-1" not in text
    assert "rt-1" not in text


def test_rotation_replaces_both_tokens_and_keeps_the_device() -> None:
    cred = credential()
    pair = TokenPair(device_id="dev-1", access_token="at-2", refresh_token="rt-2", expires_in=60)
    later = NOW + timedelta(minutes=5)
    new = cred.rotated(pair, now=later)
    assert (new.access_token, new.refresh_token) == ("at-2", "rt-2")
    assert new.access_expires_at == later + timedelta(seconds=60)
    assert new.broker_url == cred.broker_url
    other = TokenPair(device_id="dev-9", access_token="a", refresh_token="r", expires_in=60)
    with pytest.raises(CredentialError, match="dev-9"):
        cred.rotated(other)


@posix_only
def test_saved_file_is_0600_in_a_0700_dir(tmp_path: Path) -> None:
    path = tmp_path / "home" / "device.json"
    save(path, credential())
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert load(path) == credential()
    assert json.loads(path.read_text())["refresh_token"] == "rt-1"


@posix_only
def test_save_ignores_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        save(tmp_path / "device.json", credential())
    finally:
        os.umask(old)
    assert mode(tmp_path / "device.json") == 0o600


@posix_only
def test_save_tightens_an_existing_loose_directory(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    save(home / "device.json", credential())
    assert mode(home) == 0o700


def test_save_replaces_atomically_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "device.json"
    save(path, credential("rt-1"))
    inode = path.stat().st_ino
    save(path, credential("rt-2"))
    assert load(path).refresh_token == "rt-2"
    assert path.stat().st_ino != inode  # a new file was renamed over the old one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["device.json"]


def test_failed_save_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "device.json"
    save(path, credential("rt-1"))
    (tmp_path / "blocker").mkdir()
    with pytest.raises(CredentialError):
        save(tmp_path / "blocker", credential("rt-2"))  # cannot replace a directory
    assert load(path).refresh_token == "rt-1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "device.json"]


@posix_only
@pytest.mark.parametrize("loose", [0o640, 0o604, 0o660, 0o644, 0o700])
def test_load_refuses_looser_permissions(tmp_path: Path, loose: int) -> None:
    path = tmp_path / "device.json"
    save(path, credential())
    path.chmod(loose)
    if loose & 0o077:
        with pytest.raises(CredentialError, match="chmod 600"):
            load(path)
    else:
        assert load(path) == credential()  # owner-only bits are fine


@posix_only
def test_load_refuses_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    save(real, credential())
    link = tmp_path / "device.json"
    link.symlink_to(real)
    with pytest.raises(CredentialError, match="cannot open"):
        load(link)


def test_missing_file_says_how_to_enroll(tmp_path: Path) -> None:
    with pytest.raises(CredentialError, match=r"not enrolled.*enroll --broker"):
        load(tmp_path / "device.json")


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"[]",
        b'{"version": 2}',
        b'{"version": 1, "broker_url": "u", "device_id": "d", "refresh_token": "r"}',
        b'{"version": 1, "broker_url": "u", "device_id": "d", "refresh_token": "r", '
        b'"access_token": "a", "access_expires_at": "yesterday"}',
    ],
)
def test_load_refuses_malformed_files(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "device.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, content)
    os.close(fd)
    with pytest.raises(CredentialError):
        load(path)


def test_store(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path / "device.json")
    assert not store.exists()
    store.save(credential())
    assert store.exists()
    assert store.load() == credential()
