"""Wire models of the HTTP API between agent and broker.

Each request model validates a decoded JSON object in `from_json` and raises `WireError`
naming the field; each model renders itself with `to_json`. Both sides use the same classes,
so the contract lives in one place.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from shared.keys import SEQ_MAX

MAX_SEGMENT_BYTES = 512 * 1024 * 1024
MAX_SEGMENT_DURATION_MS = 60 * 60 * 1000
MAX_DEVICE_NAME = 200
MAX_CODE = 200


class WireError(ValueError):
    """A field of a request is missing or not of the form the contract says."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


def _obj(data: object) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise WireError("body", "must be a JSON object")
    return data


def _str(data: dict[str, Any], name: str, *, max_len: int, min_len: int = 1) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise WireError(name, "must be a string")
    if not min_len <= len(value) <= max_len:
        raise WireError(name, f"must be {min_len} to {max_len} characters long")
    return value


def _int(data: dict[str, Any], name: str, *, lo: int, hi: int) -> int:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise WireError(name, "must be an integer")
    if not lo <= value <= hi:
        raise WireError(name, f"must be between {lo} and {hi}")
    return value


def _digest(data: dict[str, Any], name: str, *, nbytes: int) -> str:
    value = _str(data, name, max_len=100)
    try:
        raw = base64.b64decode(value, validate=True)
    except binascii.Error:
        raise WireError(name, "must be base64") from None
    if len(raw) != nbytes:
        raise WireError(name, f"must be the base64 of a {nbytes}-byte digest")
    return value


def parse_timestamp(value: object, name: str = "timestamp") -> datetime:
    """An RFC 3339 timestamp with a time zone."""
    if not isinstance(value, str) or len(value) > 64:
        raise WireError(name, "must be an RFC 3339 timestamp string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise WireError(name, "must be an RFC 3339 timestamp") from None
    if parsed.tzinfo is None:
        raise WireError(name, "must carry a time zone (e.g. 'Z' or '+00:00')")
    return parsed


def format_timestamp(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def parse_seq(raw: str) -> int:
    """A segment number from a URL path segment."""
    try:
        seq = int(raw, 10)
    except ValueError:
        raise WireError("seq", "must be an integer") from None
    if not 0 <= seq <= SEQ_MAX:
        raise WireError("seq", f"must be between 0 and {SEQ_MAX}")
    return seq


@dataclass(frozen=True, slots=True, kw_only=True)
class EnrollRequest:
    code: str
    name: str

    @classmethod
    def from_json(cls, data: object) -> EnrollRequest:
        d = _obj(data)
        return cls(
            code=_str(d, "code", max_len=MAX_CODE),
            name=_str(d, "name", max_len=MAX_DEVICE_NAME),
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class RefreshRequest:
    refresh_token: str

    @classmethod
    def from_json(cls, data: object) -> RefreshRequest:
        return cls(refresh_token=_str(_obj(data), "refresh_token", max_len=200))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenPair:
    device_id: str
    access_token: str
    refresh_token: str
    expires_in: int

    @classmethod
    def from_json(cls, data: object) -> TokenPair:
        d = _obj(data)
        return cls(
            device_id=_str(d, "device_id", max_len=100),
            access_token=_str(d, "access_token", max_len=4096),
            refresh_token=_str(d, "refresh_token", max_len=200),
            expires_in=_int(d, "expires_in", lo=1, hi=86_400),
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class StartRecording:
    started_at: datetime

    @classmethod
    def from_json(cls, data: object) -> StartRecording:
        return cls(started_at=parse_timestamp(_obj(data).get("started_at"), "started_at"))

    def to_json(self) -> dict[str, Any]:
        return {"started_at": format_timestamp(self.started_at)}


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadRequest:
    """What the agent declares about a segment before it may upload it."""

    size: int
    sha256: str  # base64, as S3's x-amz-checksum-sha256 header carries it
    md5: str  # base64, as the Content-MD5 header carries it
    started_at: datetime
    duration_ms: int

    @classmethod
    def from_json(cls, data: object) -> UploadRequest:
        d = _obj(data)
        return cls(
            size=_int(d, "size", lo=1, hi=MAX_SEGMENT_BYTES),
            sha256=_digest(d, "sha256", nbytes=32),
            md5=_digest(d, "md5", nbytes=16),
            started_at=parse_timestamp(d.get("started_at"), "started_at"),
            duration_ms=_int(d, "duration_ms", lo=1, hi=MAX_SEGMENT_DURATION_MS),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "sha256": self.sha256,
            "md5": self.md5,
            "started_at": format_timestamp(self.started_at),
            "duration_ms": self.duration_ms,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadGrant:
    """A presigned single-use PUT: send exactly these headers with exactly the declared bytes."""

    url: str
    method: str
    headers: dict[str, str]
    expires_at: str

    @classmethod
    def from_json(cls, data: object) -> UploadGrant:
        d = _obj(data)
        headers = d.get("headers")
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise WireError("headers", "must be an object of strings")
        return cls(
            url=_str(d, "url", max_len=8192),
            method=_str(d, "method", max_len=10),
            headers=dict(headers),
            expires_at=_str(d, "expires_at", max_len=64),
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentInfo:
    seq: int
    key: str
    state: str
    size: int
    sha256: str
    started_at: str
    duration_ms: int
    grants: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingInfo:
    recording_id: str
    user_id: str
    device_id: str | None
    state: str
    started_at: str
    finished_at: str | None
    segments: list[SegmentInfo] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
