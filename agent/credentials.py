"""The device credential: which broker, which device, and its rotating tokens.

Stored as JSON in `<config dir>/device.json`, mode 0600 in a 0700 directory, replaced
atomically (temp file in the same directory, fsync, `os.replace`, fsync of the directory) so a
crash leaves either the old or the new file, never a torn one. A file readable or writable by
anyone but its owner is refused: it holds a refresh token.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agent.errors import CredentialError
from agent.platform.files import make_private_dir, open_read, private_problem, write_atomic
from shared.wire import TokenPair, WireError, format_timestamp, parse_timestamp

FORMAT_VERSION = 1
_MAX_FILE_BYTES = 64 * 1024


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceCredential:
    """What an enrolled agent holds. The tokens never appear in `repr`."""

    broker_url: str
    device_id: str
    refresh_token: str = field(repr=False)
    access_token: str = field(repr=False)
    access_expires_at: datetime  # UTC

    @classmethod
    def from_token_pair(
        cls, broker_url: str, pair: TokenPair, *, now: datetime | None = None
    ) -> DeviceCredential:
        issued = now or _now()
        return cls(
            broker_url=broker_url,
            device_id=pair.device_id,
            refresh_token=pair.refresh_token,
            access_token=pair.access_token,
            access_expires_at=issued + timedelta(seconds=pair.expires_in),
        )

    def rotated(self, pair: TokenPair, *, now: datetime | None = None) -> DeviceCredential:
        """This credential after a refresh: the new pair replaces both tokens."""
        if pair.device_id != self.device_id:
            raise CredentialError(
                f"the broker refreshed the token of device {pair.device_id!r}, "
                f"but this agent is device {self.device_id!r}"
            )
        issued = now or _now()
        return replace(
            self,
            refresh_token=pair.refresh_token,
            access_token=pair.access_token,
            access_expires_at=issued + timedelta(seconds=pair.expires_in),
        )

    def expires_within(self, seconds: float, *, now: datetime | None = None) -> bool:
        """True when the access token expires in less than `seconds`."""
        return self.access_expires_at - (now or _now()) < timedelta(seconds=seconds)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "broker_url": self.broker_url,
            "device_id": self.device_id,
            "refresh_token": self.refresh_token,
            "access_token": self.access_token,
            "access_expires_at": format_timestamp(self.access_expires_at),
        }

    @classmethod
    def from_json(cls, data: object) -> DeviceCredential:
        if not isinstance(data, dict):
            raise CredentialError("the credential file does not hold a JSON object")
        if data.get("version") != FORMAT_VERSION:
            raise CredentialError(
                f"the credential file has format version {data.get('version')!r}, "
                f"this agent reads version {FORMAT_VERSION}"
            )
        values: dict[str, str] = {}
        for name in ("broker_url", "device_id", "refresh_token", "access_token"):
            value = data.get(name)
            if not isinstance(value, str) or not value:
                raise CredentialError(f"the credential file lacks {name!r}")
            values[name] = value
        try:
            expires = parse_timestamp(data.get("access_expires_at"), "access_expires_at")
        except WireError as exc:
            raise CredentialError(f"the credential file has a bad {exc}") from None
        return cls(**values, access_expires_at=expires.astimezone(UTC))


def ensure_private_dir(path: Path) -> None:
    """Create `path` (and parents) and make sure the directory itself is mode 0700."""
    try:
        make_private_dir(path)
    except OSError as exc:
        raise CredentialError(f"cannot create the directory {path}: {exc.strerror or exc}") from exc


def save(path: Path, credential: DeviceCredential) -> None:
    """Write the credential atomically with mode 0600 (directory 0700)."""
    ensure_private_dir(path.parent)
    write_private(path, (json.dumps(credential.to_json(), indent=2) + "\n").encode())


def write_private(path: Path, payload: bytes) -> None:
    """Replace `path` atomically with `payload`, mode 0600, fsynced with its directory."""
    try:
        write_atomic(path, payload, durable=True)
    except OSError as exc:
        raise CredentialError(f"cannot write {path}: {exc.strerror or exc}") from exc


def load(path: Path) -> DeviceCredential:
    """Read the credential; refuse a symlink or a file others may read or write."""
    raw = read_private(path, holds="a device token", max_bytes=_MAX_FILE_BYTES)
    if raw is None:
        raise CredentialError(
            f"this device is not enrolled ({path} does not exist); "
            "run 'bucketreel-agent enroll --broker URL --code CODE' first"
        )
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CredentialError(f"{path} is not valid JSON") from None
    return DeviceCredential.from_json(data)


def read_private(path: Path, *, holds: str, max_bytes: int) -> bytes | None:
    """The bytes of a file only this user may touch; None when it does not exist.

    A symlink, a file that is not regular, one others may read or write, one of another user
    or one larger than `max_bytes` is refused with a `CredentialError` saying what to do.
    """
    try:
        fd = open_read(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CredentialError(f"cannot open {path}: {exc.strerror or exc}") from exc
    try:
        st = os.fstat(fd)
        if problem := private_problem(st, path, holds):
            raise CredentialError(problem)
        if st.st_size > max_bytes:
            raise CredentialError(f"{path} is too large to hold {holds}")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read(max_bytes + 1)
    except OSError as exc:
        raise CredentialError(f"cannot read {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)


class CredentialStore:
    """The credential file at one path: `load()` and `save()`; `save` is the rotation hook."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def exists(self) -> bool:
        return self.path.exists() or self.path.is_symlink()

    def load(self) -> DeviceCredential:
        return load(self.path)

    def save(self, credential: DeviceCredential) -> None:
        save(self.path, credential)
