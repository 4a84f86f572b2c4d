"""Chain of custody: the signed record each segment carries, on both sides.

A record names one segment of one recording — recording id, seq, size and the SHA-256 of
its bytes — and the hash of the record of the segment before it (`GENESIS` for the first),
so the records of a recording form a hash chain. The agent signs each record with the
device's Ed25519 key; the broker registered the public key at enrollment and verifies every
record with that stored key only, before it grants an upload.

The signed bytes are a canonical encoding built from the fields, never bytes sent by the
agent: the broker rebuilds the record from what it knows (the path's recording id and seq,
the declared size and SHA-256) plus the `prev` the agent names, so a record signed for one
segment can never be passed off as another's.

Format v2 (what agents sign now) also covers the segment's declared `started_at` (Unix
milliseconds) and `duration_ms`, so re-timing a segment in the broker's database breaks its
record; v1 records (older agents) cover neither and are named as v1 wherever they are
checked. A v2 signature never verifies as v1 nor the other way round (each format has its own
context prefix). Gap reports are signed too (`GapRecord`): which segments will never arrive,
or which time range was a pause, and why.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

RECORD_CONTEXT = b"bucketreel-custody-record-v1\n"
RECORD_CONTEXT_V2 = b"bucketreel-custody-record-v2\n"
GAP_CONTEXT = b"bucketreel-custody-gap-v1\n"
V1, V2 = 1, 2
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
GENESIS = "0" * 64
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


class CustodyFormatError(ValueError):
    """A public key, signature or hash is not of the form the record format needs."""


def timestamp_ms(value: datetime) -> int:
    """Whole Unix milliseconds (exact integer arithmetic; a naive value is taken as UTC, as
    SQLite gives them back), the form in which records sign times."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // timedelta(milliseconds=1)


def _canonical(context: bytes, body: dict[str, object]) -> bytes:
    return context + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True, kw_only=True)
class CustodyRecord:
    recording_id: str
    seq: int
    size: int
    sha256: str  # base64, as the upload declares it
    prev: str  # hex SHA-256 of the previous record, GENESIS for the first
    version: int = V1
    started_at_ms: int | None = None  # v2: the declared start, Unix milliseconds
    duration_ms: int | None = None  # v2: the declared duration

    def canonical(self) -> bytes:
        body: dict[str, object] = {
            "prev": self.prev,
            "recording_id": self.recording_id,
            "seq": self.seq,
            "sha256": self.sha256,
            "size": self.size,
        }
        if self.version == V1:
            return _canonical(RECORD_CONTEXT, body)
        if self.version != V2 or self.started_at_ms is None or self.duration_ms is None:
            raise CustodyFormatError("a v2 record signs its start and duration")
        body.update(started_at=self.started_at_ms, duration_ms=self.duration_ms)
        return _canonical(RECORD_CONTEXT_V2, body)

    def digest(self) -> str:
        """The record's hash (hex): what the next record's `prev` names."""
        return hashlib.sha256(self.canonical()).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class GapRecord:
    """A gap report as the device signs it: segments that will never arrive (`seqs`, sorted,
    each once), or a pause (`from`/`to`, Unix milliseconds), and the reason."""

    recording_id: str
    seqs: tuple[int, ...]
    reason: str
    from_ms: int | None = None
    to_ms: int | None = None

    @classmethod
    def of(
        cls, recording_id: str, seqs: list[int] | tuple[int, ...], reason: str,
        from_: datetime | None, to: datetime | None,
    ) -> GapRecord:
        return cls(
            recording_id=recording_id, seqs=tuple(sorted(set(seqs))), reason=reason,
            from_ms=None if from_ is None else timestamp_ms(from_),
            to_ms=None if to is None else timestamp_ms(to),
        )

    def canonical(self) -> bytes:
        return _canonical(GAP_CONTEXT, {
            "from": self.from_ms, "reason": self.reason, "recording_id": self.recording_id,
            "seqs": list(self.seqs), "to": self.to_ms,
        })


def is_record_hash(value: object) -> bool:
    return (
        isinstance(value, str)
        and len(value) == 64
        and all(c in "0123456789abcdef" for c in value)
    )


def encode_public_key(key: Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return base64.b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode("ascii")


def decode_public_key(value: str) -> Ed25519PublicKey:
    raw = _b64(value, PUBLIC_KEY_BYTES, "public key")
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise CustodyFormatError("not an Ed25519 public key") from None


def sign(key: Ed25519PrivateKey, record: CustodyRecord | GapRecord) -> str:
    """The base64 Ed25519 signature of the record's canonical bytes."""
    return base64.b64encode(key.sign(record.canonical())).decode("ascii")


def verify(public_key: str, record: CustodyRecord | GapRecord, signature: str) -> bool:
    """Whether `signature` is the device's signature of `record` (False on any malformed input)."""
    return verify_canonical(public_key, record.canonical(), signature)


def verify_canonical(public_key: str, canonical: bytes, signature: str) -> bool:
    """`verify` of a record given as its canonical bytes: a pure function of its three
    arguments (so a caller may remember its answers)."""
    try:
        key = decode_public_key(public_key)
        raw = _b64(signature, SIGNATURE_BYTES, "signature")
        key.verify(raw, canonical)
    except (CustodyFormatError, InvalidSignature):
        return False
    return True


def _b64(value: str, nbytes: int, what: str) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise CustodyFormatError(f"the {what} is not base64") from None
    if len(raw) != nbytes:
        raise CustodyFormatError(f"the {what} must be {nbytes} bytes")
    return raw
