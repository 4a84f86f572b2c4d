"""Wire models of the HTTP API between agent and broker.

Each request model validates a decoded JSON object in `from_json` and raises `WireError`
naming the field; each model renders itself with `to_json`. Both sides use the same classes,
so the contract lives in one place.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from shared.custody import CustodyFormatError, decode_public_key, is_record_hash
from shared.keys import SEQ_MAX

MAX_SEGMENT_BYTES = 512 * 1024 * 1024
MAX_SEGMENT_DURATION_MS = 60 * 60 * 1000
MAX_DEVICE_NAME = 200
MAX_CODE = 200
MAX_FPS = 60.0
MAX_IDLE_SECONDS = 86_400
MAX_HEARTBEAT_SECONDS = 3600


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


def optional_public_key(data: dict[str, Any], name: str = "public_key") -> str | None:
    """The device's Ed25519 public key (base64 of 32 bytes), when the request carries one."""
    if data.get(name) is None:
        return None
    value = _str(data, name, max_len=100)
    try:
        decode_public_key(value)
    except CustodyFormatError as exc:
        raise WireError(name, str(exc)) from None
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class EnrollRequest:
    code: str
    name: str
    # the device's Ed25519 public key (chain of custody); optional for older agents
    public_key: str | None = None

    @classmethod
    def from_json(cls, data: object) -> EnrollRequest:
        d = _obj(data)
        return cls(
            code=_str(d, "code", max_len=MAX_CODE),
            name=_str(d, "name", max_len=MAX_DEVICE_NAME),
            public_key=optional_public_key(d),
        )

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "name": self.name}
        if self.public_key is not None:
            body["public_key"] = self.public_key
        return body


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
class CustodyProof:
    """The chain-of-custody part of an upload request (see `shared.custody`).

    The record itself is rebuilt by the broker from the path and the declaration; the agent
    names only the previous record's hash and signs the whole.
    """

    prev: str  # hex SHA-256 of the previous segment's record, or custody.GENESIS
    signature: str  # base64 Ed25519 signature of the record's canonical bytes

    @classmethod
    def from_json(cls, data: object) -> CustodyProof:
        d = _obj(data)
        prev = d.get("prev")
        if not is_record_hash(prev):
            raise WireError("custody.prev", "must be 64 lowercase hex digits")
        signature = _str(d, "signature", max_len=100)
        try:
            raw = base64.b64decode(signature, validate=True)
        except binascii.Error:
            raise WireError("custody.signature", "must be base64") from None
        if len(raw) != 64:
            raise WireError("custody.signature", "must be the base64 of a 64-byte signature")
        return cls(prev=str(prev), signature=signature)

    def to_json(self) -> dict[str, Any]:
        return {"prev": self.prev, "signature": self.signature}


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadRequest:
    """What the agent declares about a segment before it may upload it."""

    size: int
    sha256: str  # base64, as S3's x-amz-checksum-sha256 header carries it
    md5: str  # base64, as the Content-MD5 header carries it
    started_at: datetime
    duration_ms: int
    custody: CustodyProof | None = None  # required once the device registered a key

    @classmethod
    def from_json(cls, data: object) -> UploadRequest:
        d = _obj(data)
        custody = d.get("custody")
        return cls(
            size=_int(d, "size", lo=1, hi=MAX_SEGMENT_BYTES),
            sha256=_digest(d, "sha256", nbytes=32),
            md5=_digest(d, "md5", nbytes=16),
            started_at=parse_timestamp(d.get("started_at"), "started_at"),
            duration_ms=_int(d, "duration_ms", lo=1, hi=MAX_SEGMENT_DURATION_MS),
            custody=None if custody is None else CustodyProof.from_json(custody),
        )

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "size": self.size,
            "sha256": self.sha256,
            "md5": self.md5,
            "started_at": format_timestamp(self.started_at),
            "duration_ms": self.duration_ms,
        }
        if self.custody is not None:
            body["custody"] = self.custody.to_json()
        return body


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
    record_hash: str | None = None  # the segment's chain-of-custody record, when signed


GAP_REASONS = ("spool_limit", "unsent_at_exit", "refused", "agent_died", "idle", "locked")
# Pauses: the agent stopped capturing (no input for its idle time, or the screen locked).
# They name no segment; they carry the paused time range instead.
PAUSE_REASONS = ("idle", "locked")
MAX_GAP_SEQS = 10_000
MAX_STATE = 20


@dataclass(frozen=True, slots=True, kw_only=True)
class GapInfo:
    seqs: list[int]
    reason: str
    reported_at: str
    from_: str | None = None  # a pause's time range (idle, locked)
    to: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "seqs": list(self.seqs), "reason": self.reason, "reported_at": self.reported_at
        }
        if self.from_ is not None:
            body["from"] = self.from_
            body["to"] = self.to
        return body


@dataclass(frozen=True, slots=True, kw_only=True)
class GapReport:
    """Segments of a recording that will never arrive, and why (reported by its agent); or a
    pause of the recording (reasons `idle` and `locked`) with its time range.

    `seqs` may be empty: for `agent_died`, whatever follows the last verified segment. A pause
    names no segment (`seqs` empty) and carries `from` and `to` (RFC 3339, `from` <= `to`);
    the other reasons carry no time range.
    """

    seqs: list[int]
    reason: str
    from_: datetime | None = None
    to: datetime | None = None
    # The device's signature of the report (`shared.custody.GapRecord`), base64.
    signature: str | None = None

    @classmethod
    def from_json(cls, data: object) -> GapReport:
        d = _obj(data)
        seqs = d.get("seqs")
        if not isinstance(seqs, list) or len(seqs) > MAX_GAP_SEQS:
            raise WireError("seqs", f"must be a list of at most {MAX_GAP_SEQS} integers")
        for seq in seqs:
            if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= SEQ_MAX:
                raise WireError("seqs", f"must hold integers between 0 and {SEQ_MAX}")
        reason = d.get("reason")
        if reason not in GAP_REASONS:
            raise WireError("reason", f"must be one of {', '.join(GAP_REASONS)}")
        signature = None
        if d.get("signature") is not None:
            signature = _str(d, "signature", max_len=100)
            try:
                if len(base64.b64decode(signature, validate=True)) != 64:
                    raise binascii.Error
            except binascii.Error:
                raise WireError("signature", "must be the base64 of a 64-byte signature") from None
        if reason not in PAUSE_REASONS:
            for name in ("from", "to"):
                if d.get(name) is not None:
                    raise WireError(name, f"only a pause ({', '.join(PAUSE_REASONS)}) has one")
            return cls(seqs=sorted(set(seqs)), reason=str(reason), signature=signature)
        if seqs:
            raise WireError("seqs", "must be empty for a pause")
        start = parse_timestamp(d.get("from"), "from")
        end = parse_timestamp(d.get("to"), "to")
        if end < start:
            raise WireError("to", "must not be before from")
        return cls(seqs=[], reason=str(reason), from_=start, to=end, signature=signature)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"seqs": list(self.seqs), "reason": self.reason}
        if self.from_ is not None and self.to is not None:
            body["from"] = format_timestamp(self.from_)
            body["to"] = format_timestamp(self.to)
        if self.signature is not None:
            body["signature"] = self.signature
        return body


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    """What a running agent reports about itself every minute (and at start and stop)."""

    state: str
    recording_id: str | None = None
    spool_bytes: int = 0
    spool_segments: int = 0
    last_upload: dict[str, Any] | None = None  # {"at", "seq", "size"}
    errors: int = 0
    last_error: dict[str, Any] | None = None  # {"at", "message"}
    interval: int = 60  # seconds until the next heartbeat is due
    # what it records with now (its own settings with the broker's policy applied):
    # {"fps", "segment_seconds", "idle_seconds"}, so an admin sees that a policy arrived
    settings: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, data: object) -> Heartbeat:
        d = _obj(data)
        recording_id = d.get("recording_id")
        if recording_id is not None:
            recording_id = _str(d, "recording_id", max_len=100)
        return cls(
            state=_str(d, "state", max_len=MAX_STATE),
            recording_id=recording_id,
            spool_bytes=_int(d, "spool_bytes", lo=0, hi=2**62),
            spool_segments=_int(d, "spool_segments", lo=0, hi=2**31),
            last_upload=_small_obj(d, "last_upload", {"at": str, "seq": int, "size": int}),
            errors=_int(d, "errors", lo=0, hi=2**31),
            last_error=_small_obj(d, "last_error", {"at": str, "message": str}),
            # at most an hour (the agent's own limit): a device cannot put off "silent"
            interval=_int(d, "interval", lo=1, hi=MAX_HEARTBEAT_SECONDS) if "interval" in d
            else 60,
            settings=_small_obj(
                d, "settings", {"fps": float, "segment_seconds": float, "idle_seconds": float}
            ),
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _small_obj(d: dict[str, Any], name: str, fields: dict[str, type]) -> dict[str, Any] | None:
    """An optional object with only these fields (strings at most 300 characters)."""
    value = d.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise WireError(name, "must be an object or null")
    out: dict[str, Any] = {}
    for key, kind in fields.items():
        item = value.get(key)
        if item is None:
            continue
        if kind is int and (isinstance(item, bool) or not isinstance(item, int)):
            raise WireError(f"{name}.{key}", "must be an integer")
        if kind is float and (
            isinstance(item, bool) or not isinstance(item, int | float)
            or not math.isfinite(item) or item < 0
        ):
            raise WireError(f"{name}.{key}", "must be a number, 0 or more")
        if kind is str and (not isinstance(item, str) or len(item) > 300):
            raise WireError(f"{name}.{key}", "must be a string of at most 300 characters")
        out[key] = item
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingInfo:
    recording_id: str
    user_id: str
    device_id: str | None
    state: str
    started_at: str
    finished_at: str | None
    segments: list[SegmentInfo] = field(default_factory=list)
    gaps: list[GapInfo] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["gaps"] = [gap.to_json() for gap in self.gaps]
        return body


@dataclass(frozen=True, slots=True)
class Range:
    """The values a number setting takes: `kind` (float or int), `lo` to `hi` (`lo` itself
    excluded when `lo_open`)."""

    kind: type
    lo: float = 0
    hi: float = math.inf
    lo_open: bool = False

    def check(self, value: float) -> float:
        """`value` when within the range; else ValueError saying what is allowed."""
        too_low = value <= self.lo if self.lo_open else value < self.lo
        if too_low or value > self.hi or not math.isfinite(value):
            lowest = f"more than {self.lo:g}" if self.lo_open else f"at least {self.lo:g}"
            raise ValueError(f"must be {lowest} and at most {self.hi:g}")
        return value


# The recording policy: what a tenant's admin may set for every agent of the tenant, pushed
# in the heartbeat reply. The agent's own settings of these names take the same ranges
# (agent.config), so a policy the broker accepts is one every agent applies.
POLICY_RANGES: dict[str, Range] = {
    "fps": Range(float, 0, MAX_FPS, lo_open=True),
    "segment_seconds": Range(float, 1, MAX_SEGMENT_DURATION_MS / 1000),
    "idle_seconds": Range(int, 0, MAX_IDLE_SECONDS),  # whole seconds; 0: never pause
}
POLICY_KEYS = tuple(POLICY_RANGES)
PolicyValue = float | int


def policy_value(key: str, value: object) -> PolicyValue:
    """A policy value checked against its range (WireError naming the key when it is not)."""
    bound = POLICY_RANGES[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WireError(key, "must be an integer" if bound.kind is int else "must be a number")
    if bound.kind is int and not isinstance(value, int):
        raise WireError(key, "must be an integer (whole seconds)")
    try:
        return bound.kind(bound.check(value))  # type: ignore[no-any-return]
    except ValueError as exc:
        raise WireError(key, str(exc)) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """A tenant's recording policy. None leaves the setting to each agent's own configuration
    (its file, flags or defaults); an agent's command-line flags win over the policy."""

    fps: float | None = None
    segment_seconds: float | None = None
    idle_seconds: int | None = None

    @classmethod
    def of(cls, values: Mapping[str, PolicyValue | None]) -> Policy:
        """From values by key, each checked already (`policy_value`); absent keys are None."""
        idle = values.get("idle_seconds")
        return cls(
            fps=values.get("fps"),
            segment_seconds=values.get("segment_seconds"),
            idle_seconds=None if idle is None else int(idle),
        )

    @classmethod
    def from_json(cls, data: object) -> Policy:
        """A whole policy: an absent or null key is None."""
        d = _obj(data)
        return cls.of({k: policy_value(k, d[k]) for k in POLICY_KEYS if d.get(k) is not None})

    def to_json(self) -> dict[str, Any]:
        """The keys that are set (what the heartbeat reply carries)."""
        return {k: v for k, v in self.values().items() if v is not None}

    def values(self) -> dict[str, PolicyValue | None]:
        """Every key, None where it is not set."""
        return {k: getattr(self, k) for k in POLICY_KEYS}


@dataclass(frozen=True, slots=True)
class PolicyUpdate:
    """An admin's change to the policy: each key it names is set, or cleared with null; the
    keys it does not name keep their values."""

    changes: dict[str, PolicyValue | None]

    @classmethod
    def from_json(cls, data: object) -> PolicyUpdate:
        d = _obj(data)
        known = ", ".join(POLICY_KEYS)
        for key in d:
            if key not in POLICY_RANGES:
                raise WireError(str(key), f"not a policy key (known keys: {known})")
        if not d:
            raise WireError("body", f"name at least one of {known} (null clears it)")
        return cls(
            {k: None if d[k] is None else policy_value(k, d[k]) for k in POLICY_KEYS if k in d}
        )

    def to_json(self) -> dict[str, Any]:
        return dict(self.changes)

    def applied_to(self, policy: Policy) -> Policy:
        return Policy.of({**policy.values(), **self.changes})
