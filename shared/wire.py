"""Wire models of the HTTP API between agent and broker.

Each body is a `shared.model.Model` (a msgspec Struct): its limits live on its fields, the
broker's binder decodes requests with it, the agent renders its requests and reads the
replies with the same classes, and the OpenAPI document is generated from them. The people's
and admins' API (sign-in, storage, devices) is in `shared.api`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal, get_args

import msgspec
from msgspec import UNSET, Meta, UnsetType

from shared.custody import CustodyFormatError, decode_public_key
from shared.keys import SEQ_MAX
from shared.model import MalformedJSON, Model, WireError, invalid, utc_time

__all__ = ["MalformedJSON", "Model", "WireError"]

MAX_SEGMENT_BYTES = 512 * 1024 * 1024
MAX_SEGMENT_DURATION_MS = 60 * 60 * 1000
MAX_DEVICE_NAME = 200
MAX_CODE = 200
MAX_TOKEN = 200  # refresh tokens, challenges: what the broker issues is far shorter
MAX_ID = 100
MAX_FPS = 60.0
MAX_IDLE_SECONDS = 86_400
MAX_HEARTBEAT_SECONDS = 3600
MAX_GAP_SEQS = 10_000
MAX_STATE = 20
MAX_STATUS_TEXT = 300
MAX_VERSION = 64

# Field types: each carries its limits, which the binder enforces and the OpenAPI shows.
Id = Annotated[str, Meta(min_length=1, max_length=MAX_ID)]
Token = Annotated[str, Meta(min_length=1, max_length=MAX_TOKEN)]
Timestamp = Annotated[datetime, Meta(tz=True)]
Time = Annotated[str, Meta(max_length=64, extra_json_schema={"format": "date-time"})]
Seq = Annotated[int, Meta(ge=0, le=SEQ_MAX)]
Sha256 = Annotated[str, Meta(
    pattern="^[A-Za-z0-9+/]{43}=$",
    description="the base64 of a 32-byte SHA-256 digest",
    extra_json_schema={"contentEncoding": "base64"},
)]
Md5 = Annotated[str, Meta(
    pattern="^[A-Za-z0-9+/]{22}==$",
    description="the base64 of a 16-byte MD5 digest",
    extra_json_schema={"contentEncoding": "base64"},
)]
# A segment's codec as RFC 6381 names it in a MIME type (`video/mp4; codecs="..."`), so a
# player can ask the browser whether it plays it before fetching a byte. The broker keeps
# what the agent declares (its own segments: avc1 or av01) and checks only its form.
Codec = Annotated[str, Meta(
    pattern=r"^[a-z0-9]{4}(\.[0-9A-Za-z]{1,10}){0,8}$",
    max_length=64,
    description="the segment's codec as RFC 6381 names it, e.g. avc1.640028 or av01.0.08M.08",
)]
PublicKey = Annotated[str, Meta(
    pattern="^[A-Za-z0-9+/]{43}=$",
    description="the base64 of the device's 32-byte Ed25519 public key (chain of custody)",
    extra_json_schema={"contentEncoding": "base64"},
)]
RecordHash = Annotated[str, Meta(
    pattern="^[0-9a-f]{64}$", description="64 lowercase hex digits (a SHA-256)"
)]
Signature = Annotated[str, Meta(
    pattern="^[A-Za-z0-9+/]{86}==$",
    description="the base64 of a 64-byte Ed25519 signature",
    extra_json_schema={"contentEncoding": "base64"},
)]
DeviceName = Annotated[str, Meta(min_length=1, max_length=MAX_DEVICE_NAME)]
StatusText = Annotated[str, Meta(max_length=MAX_STATUS_TEXT)]


def format_timestamp(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def parse_timestamp(value: object, name: str = "timestamp") -> datetime:
    """An RFC 3339 timestamp with a time zone (one that exists in UTC)."""
    if not isinstance(value, str) or len(value) > 64:
        raise WireError(name, "must be an RFC 3339 timestamp string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise WireError(name, "must be an RFC 3339 timestamp") from None
    if parsed.tzinfo is None:
        raise WireError(name, "must carry a time zone (e.g. 'Z' or '+00:00')")
    try:
        utc_time(parsed, name)
    except ValueError:
        raise WireError(name, "must be a time that exists in UTC") from None
    return parsed


def parse_seq(raw: str) -> int:
    """A segment number from a URL path segment."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        raise WireError("seq", f"must be an integer between 0 and {SEQ_MAX}")
    seq = int(raw, 10)
    if not 0 <= seq <= SEQ_MAX:
        raise WireError("seq", f"must be between 0 and {SEQ_MAX}")
    return seq


def check_public_key(value: str | None, name: str = "public_key") -> None:
    if value is None:
        return
    try:
        decode_public_key(value)
    except CustodyFormatError as exc:
        raise invalid(name, str(exc)) from None


class EnrollRequest(Model, omit_defaults=True):
    code: Annotated[str, Meta(min_length=1, max_length=MAX_CODE)]
    name: DeviceName
    # the device's Ed25519 public key (chain of custody); optional for older agents
    public_key: PublicKey | None = None

    def __post_init__(self) -> None:
        check_public_key(self.public_key)


class RefreshRequest(Model):
    refresh_token: Token


class TokenPair(Model):
    device_id: Id
    access_token: Annotated[str, Meta(min_length=1, max_length=4096)]
    refresh_token: Token
    expires_in: Annotated[int, Meta(ge=1, le=86_400)]


class StartRecording(Model):
    started_at: Timestamp

    def __post_init__(self) -> None:
        utc_time(self.started_at, "started_at")


class RecordingCreated(Model):
    recording_id: Id


class CustodyProof(Model):
    """The chain-of-custody part of an upload request (see `shared.custody`).

    The record itself is rebuilt by the broker from the path and the declaration; the agent
    names only the previous record's hash and signs the whole.
    """

    prev: RecordHash  # the previous segment's record, or custody.GENESIS
    signature: Signature  # of the record's canonical bytes


class UploadRequest(Model, omit_defaults=True):
    """What the agent declares about a segment before it may upload it."""

    size: Annotated[int, Meta(ge=1, le=MAX_SEGMENT_BYTES)]
    sha256: Sha256  # as S3's x-amz-checksum-sha256 header carries it
    md5: Md5  # as the Content-MD5 header carries it
    started_at: Timestamp
    duration_ms: Annotated[int, Meta(ge=1, le=MAX_SEGMENT_DURATION_MS)]
    custody: CustodyProof | None = None  # required once the device registered a key
    codec: Codec | None = None  # None: an older agent, whose segments are all H.264

    def __post_init__(self) -> None:
        utc_time(self.started_at, "started_at")


class UploadGrant(Model):
    """A presigned single-use PUT: send exactly these headers with exactly the declared bytes."""

    url: Annotated[str, Meta(min_length=1, max_length=8192, extra_json_schema={"format": "uri"})]
    method: Literal["PUT"]
    headers: dict[str, str]
    expires_at: Time


class SegmentState(Model):
    state: Literal["verified"]


SegmentStateName = Literal["pending", "verified"]


class SegmentInfo(Model):
    seq: Seq
    key: str
    state: SegmentStateName
    size: int
    sha256: Sha256
    started_at: Time
    duration_ms: int
    grants: int
    record_hash: str | None = None  # the segment's chain-of-custody record, when signed
    codec: str | None = None  # as its agent declared it (None: an older agent, H.264)


GapReason = Literal[
    "spool_limit", "unsent_at_exit", "refused", "agent_died", "idle", "locked", "capture_blocked"
]
GAP_REASONS: tuple[str, ...] = get_args(GapReason)
# Pauses: the agent stopped recording for a while: no input for its idle time, the screen
# locked, or its capture delivering no picture (`capture_blocked`: see CaptureState). They
# name no segment; they carry the time range instead.
PAUSE_REASONS = ("idle", "locked", "capture_blocked")

# Why a capture delivers no picture: the OS refuses it (macOS without the Screen Recording
# permission), a Wayland session (X11 capture sees only black XWayland windows), a display
# that shows one colour only, or a picture that stays still while the user works.
CaptureBlockReason = Literal["no_permission", "wayland_session", "display_blank", "unknown"]
CAPTURE_BLOCK_REASONS: tuple[str, ...] = get_args(CaptureBlockReason)


class GapInfo(Model, omit_defaults=True):
    seqs: list[int]
    reason: GapReason
    reported_at: Time
    from_: Time | None = msgspec.field(default=None, name="from")  # a pause's time range
    to: Time | None = None


class GapReport(Model, omit_defaults=True):
    """Segments of a recording that will never arrive, and why (reported by its agent); or a
    pause of the recording (reasons `idle`, `locked` and `capture_blocked`) with its time
    range.

    `seqs` may be empty: for `agent_died`, whatever follows the last verified segment. A pause
    names no segment (`seqs` empty) and carries `from` and `to` (RFC 3339, `from` <= `to`);
    the other reasons carry no time range. `seqs` come back sorted, without repeats.
    """

    seqs: Annotated[list[Seq], Meta(max_length=MAX_GAP_SEQS)]
    reason: GapReason
    from_: Timestamp | None = msgspec.field(default=None, name="from")
    to: Timestamp | None = None
    # The device's signature of the report (`shared.custody.GapRecord`).
    signature: Signature | None = None

    def __post_init__(self) -> None:
        if self.reason not in PAUSE_REASONS:
            for name, value in (("from", self.from_), ("to", self.to)):
                if value is not None:
                    raise invalid(name, f"only a pause ({', '.join(PAUSE_REASONS)}) has one")
            self.seqs = sorted(set(self.seqs))
            return
        if self.seqs:
            raise invalid("seqs", "must be empty for a pause")
        for name, value in (("from", self.from_), ("to", self.to)):
            if value is None:
                raise invalid(name, "is required for a pause")
            utc_time(value, name)
        if self.from_ is not None and self.to is not None and self.to < self.from_:
            raise invalid("to", "must not be before from")


class RecordingInfo(Model):
    recording_id: Id
    user_id: Id
    device_id: Id | None
    state: Literal["recording", "finished"]
    started_at: Time
    finished_at: Time | None
    segments: list[SegmentInfo] = msgspec.field(default_factory=list)
    gaps: list[GapInfo] = msgspec.field(default_factory=list)


class LastUpload(Model, omit_defaults=True):
    at: StatusText | None = None
    seq: Seq | None = None
    size: Annotated[int, Meta(ge=0, le=2**62)] | None = None


class LastError(Model, omit_defaults=True):
    at: StatusText | None = None
    message: StatusText | None = None


NonNegative = Annotated[float, Meta(ge=0)]

# The quality level: a name an admin chooses from, not a codec setting (the agent maps each
# to its encoder and CRF, agent.encode.QUALITY): "high" (H.264, larger files, crisper text),
# "standard" (H.264, the agent's default), "compact" (H.264, smaller files, softer text),
# "av1" (AV1: several times the CPU; plays in Chrome, Edge and Firefox but in
# Safari only with hardware AV1 decoding; what it saves depends on the screen, README).
QualityLevel = Literal["high", "standard", "compact", "av1"]
QUALITY_LEVELS: tuple[str, ...] = get_args(QualityLevel)


class RunSettings(Model, omit_defaults=True):
    """What an agent records with now (its own settings with the broker's policy applied)."""

    fps: NonNegative | None = None
    segment_seconds: NonNegative | None = None
    idle_seconds: NonNegative | None = None
    quality: QualityLevel | None = None  # None: an older agent


class CaptureState(Model, omit_defaults=True):
    """Whether the agent's screen capture delivers pictures: `ok`, or `blocked` with the
    reason and since when (the time it stopped uploading and started the gap)."""

    state: Literal["ok", "blocked"]
    reason: CaptureBlockReason | None = None
    since: Timestamp | None = None

    def __post_init__(self) -> None:
        if self.state == "ok":
            for name, value in (("reason", self.reason), ("since", self.since)):
                if value is not None:
                    raise invalid(name, "only a blocked capture has one")
            return
        for name, value in (("reason", self.reason), ("since", self.since)):
            if value is None:
                raise invalid(name, "is required when the capture is blocked")
        utc_time(self.since, "since")


class Heartbeat(Model):
    """What a running agent reports about itself every minute (and at start and stop)."""

    state: Annotated[str, Meta(min_length=1, max_length=MAX_STATE)]
    spool_bytes: Annotated[int, Meta(ge=0, le=2**62)]
    spool_segments: Annotated[int, Meta(ge=0, le=2**31)]
    errors: Annotated[int, Meta(ge=0, le=2**31)]
    recording_id: Id | None = None
    last_upload: LastUpload | None = None
    last_error: LastError | None = None
    # seconds until the next heartbeat is due; at most an hour (the agent's own limit), so a
    # device cannot put off "silent"
    interval: Annotated[int, Meta(ge=1, le=MAX_HEARTBEAT_SECONDS)] = 60
    # so an admin sees that a policy arrived
    settings: RunSettings | None = None
    # whether the screen capture delivers pictures (None: an older agent, or not recording)
    capture: CaptureState | None = None
    # the agent's version (`shared.version()`), shown in the admin's device list (None: an
    # older agent)
    agent_version: Annotated[str, Meta(min_length=1, max_length=MAX_VERSION)] | None = None


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
POLICY_KEYS = (*POLICY_RANGES, "quality")
PolicyValue = float | int | str



def _policy_meta(key: str) -> Meta:
    """The range of a policy key as a field's limits (one declaration: POLICY_RANGES)."""
    bound = POLICY_RANGES[key]
    if bound.lo_open:
        return Meta(gt=bound.lo, le=bound.hi)
    return Meta(ge=bound.lo, le=bound.hi)


Fps = Annotated[float, _policy_meta("fps")]
SegmentSeconds = Annotated[float, _policy_meta("segment_seconds")]
IdleSeconds = Annotated[int, _policy_meta("idle_seconds")]


def policy_value(key: str, value: object) -> PolicyValue:
    """A policy value checked against its range (WireError naming the key when it is not)."""
    if key == "quality":
        if not isinstance(value, str) or value not in QUALITY_LEVELS:
            raise WireError(key, f"must be one of {', '.join(QUALITY_LEVELS)}")
        return value
    bound = POLICY_RANGES[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WireError(key, "must be an integer" if bound.kind is int else "must be a number")
    if bound.kind is int and not isinstance(value, int):
        raise WireError(key, "must be an integer (whole seconds)")
    try:
        return bound.kind(bound.check(value))  # type: ignore[no-any-return]
    except ValueError as exc:
        raise WireError(key, str(exc)) from None


class Policy(Model, omit_defaults=True):
    """A tenant's recording policy. None leaves the setting to each agent's own configuration
    (its file, flags or defaults); an agent's command-line flags win over the policy. On the
    wire (the heartbeat reply): the keys that are set."""

    fps: Fps | None = None
    segment_seconds: SegmentSeconds | None = None
    idle_seconds: IdleSeconds | None = None
    quality: QualityLevel | None = None

    @classmethod
    def of(cls, values: Mapping[str, PolicyValue | None]) -> Policy:
        """From values by key, each checked already (`policy_value`); absent keys are None."""
        numbers: dict[str, float | int | None] = {}
        for key in POLICY_RANGES:
            value = values.get(key)
            if isinstance(value, str):
                raise WireError(key, "must be a number")
            numbers[key] = value
        idle = numbers["idle_seconds"]
        quality = values.get("quality")
        return cls(
            fps=numbers["fps"],
            segment_seconds=numbers["segment_seconds"],
            idle_seconds=None if idle is None else int(idle),
            quality=None if quality is None else policy_value("quality", quality),  # type: ignore[arg-type]
        )

    def values(self) -> dict[str, PolicyValue | None]:
        """Every key, None where it is not set."""
        return {k: getattr(self, k) for k in POLICY_KEYS}


class HeartbeatReceived(Model):
    received_at: Time
    interval: int
    policy: Policy  # the tenant's policy: the keys set


@dataclass(frozen=True, slots=True)
class PolicyUpdate:
    """An admin's change to the policy: each key it names is set, or cleared with None; the
    keys it does not name keep their values."""

    changes: dict[str, PolicyValue | None]

    def applied_to(self, policy: Policy) -> Policy:
        return Policy.of({**policy.values(), **self.changes})


class PolicyPatch(Model, forbid_unknown_fields=True):
    """`PATCH /api/v1/admin/policy`: keys named are set (null clears one); keys not named
    stay as they are."""

    unknown_field = f"not a policy key (known keys: {', '.join(POLICY_KEYS)})"

    fps: Fps | UnsetType | None = UNSET
    segment_seconds: SegmentSeconds | UnsetType | None = UNSET
    idle_seconds: IdleSeconds | UnsetType | None = UNSET
    quality: QualityLevel | UnsetType | None = UNSET

    def __post_init__(self) -> None:
        if not self.update().changes:
            raise invalid("body", f"name at least one of {', '.join(POLICY_KEYS)} (null clears it)")

    def update(self) -> PolicyUpdate:
        named = {k: getattr(self, k) for k in POLICY_KEYS}
        return PolicyUpdate({k: v for k, v in named.items() if v is not UNSET})


class PolicySettings(Model):
    """What an admin sees: every key (null where not set) and when it last changed."""

    fps: Fps | None
    segment_seconds: SegmentSeconds | None
    idle_seconds: IdleSeconds | None
    quality: QualityLevel | None
    updated_at: Time | None
