"""The device's signing key and the chain of custody of each recording (`shared.custody`).

At enrollment the agent makes an Ed25519 key pair; the private key stays in `device.key`
beside the credential (mode 0600 in the 0700 config directory, written atomically), and the
public key is registered with the broker. Each segment of a recording is sealed, in encode
order, with a record naming its bytes' SHA-256, its seq, the recording and the hash of the
previous segment's record, signed with that key. A segment that is later dropped or refused
keeps its place in the chain: the broker and `admin verify-recording` see the gap.

Records are of format v2: they sign the segment's start and duration as declared, so
neither can be changed in the broker's database unseen. Gap reports are signed too
(`sign_gap`).
"""

from __future__ import annotations

import dataclasses
import threading
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from agent.cpu import STAGES
from agent.credentials import read_private, write_private
from agent.errors import CredentialError
from shared.custody import (
    GENESIS,
    V2,
    CustodyRecord,
    GapRecord,
    encode_public_key,
    sign,
    timestamp_ms,
)
from shared.wire import CustodyProof, GapReport, format_timestamp, parse_timestamp

if TYPE_CHECKING:  # importing the encoder (PyAV) would slow `enroll` down for nothing
    from agent.encode import Segment

KEY_FILE = "device.key"
_MAX_KEY_BYTES = 4096


def key_path(credential_path: Path) -> Path:
    return credential_path.with_name(KEY_FILE)


class DeviceKey:
    """The device's Ed25519 signing key. Never printed, never logged."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key

    def __repr__(self) -> str:
        return f"DeviceKey(public={self.public_key})"

    @classmethod
    def generate(cls) -> DeviceKey:
        return cls(Ed25519PrivateKey.generate())

    @property
    def public_key(self) -> str:
        """Base64 of the raw 32-byte public key, as the enroll request carries it."""
        return encode_public_key(self._key.public_key())

    def sign(self, record: CustodyRecord | GapRecord) -> str:
        with STAGES.stage("hash"):
            return sign(self._key, record)

    def save(self, path: Path) -> None:
        """Write the key atomically, mode 0600 (the directory must exist, 0700)."""
        pem = self._key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        write_private(path, pem)

    @classmethod
    def load(cls, path: Path) -> DeviceKey | None:
        """The key in `path`, None when there is none (a device enrolled by an older agent).

        A symlink, or a file others may read or write, is refused.
        """
        raw = read_private(path, holds="the device's signing key", max_bytes=_MAX_KEY_BYTES)
        if raw is None:
            return None
        try:
            key = load_pem_private_key(raw, password=None)
        except (ValueError, TypeError):
            raise CredentialError(f"{path} does not hold a private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise CredentialError(f"{path} does not hold an Ed25519 key")
        return cls(key)


class CustodyChain:
    """Seals the segments of one recording, in order, into a signed hash chain."""

    def __init__(self, key: DeviceKey, recording_id: str) -> None:
        self._key = key
        self.recording_id = recording_id
        self._prev = GENESIS
        self._next_seq: int | None = None
        self._lock = threading.Lock()

    def seal(self, segment: Segment) -> Segment:
        """`segment` with its signed record; segments must come in seq order, none twice."""
        with self._lock:
            if self._next_seq is not None and segment.seq != self._next_seq:
                raise ValueError(
                    f"segment {segment.seq} sealed out of order (expected {self._next_seq})"
                )
            record = CustodyRecord(
                recording_id=self.recording_id,
                seq=segment.seq,
                size=segment.size,
                sha256=segment.sha256_b64(),
                prev=self._prev,
                version=V2,
                started_at_ms=timestamp_ms(_as_sent(segment.started_at)),
                duration_ms=segment.duration_ms,
            )
            proof = CustodyProof(prev=self._prev, signature=self._key.sign(record))
            self._prev = record.digest()
            self._next_seq = segment.seq + 1
        return dataclasses.replace(segment, custody=proof)


def _as_sent(value: datetime) -> datetime:
    """The time as the broker will read it from the request (the wire's own round trip)."""
    return parse_timestamp(format_timestamp(value))


def sign_gap(key: DeviceKey | None, recording_id: str, gap: GapReport) -> GapReport:
    """`gap` with the device's signature of it (as the broker will rebuild it), or unchanged
    for a device enrolled without a key."""
    if key is None:
        return gap
    record = GapRecord.of(
        recording_id, gap.seqs, gap.reason,
        None if gap.from_ is None else _as_sent(gap.from_),
        None if gap.to is None else _as_sent(gap.to),
    )
    return msgspec.structs.replace(gap, signature=key.sign(record))
