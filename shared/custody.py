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
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

RECORD_CONTEXT = b"bucketreel-custody-record-v1\n"
GENESIS = "0" * 64
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


class CustodyFormatError(ValueError):
    """A public key, signature or hash is not of the form the record format needs."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CustodyRecord:
    recording_id: str
    seq: int
    size: int
    sha256: str  # base64, as the upload declares it
    prev: str  # hex SHA-256 of the previous record, GENESIS for the first

    def canonical(self) -> bytes:
        body = {
            "prev": self.prev,
            "recording_id": self.recording_id,
            "seq": self.seq,
            "sha256": self.sha256,
            "size": self.size,
        }
        return RECORD_CONTEXT + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    def digest(self) -> str:
        """The record's hash (hex): what the next record's `prev` names."""
        return hashlib.sha256(self.canonical()).hexdigest()


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


def sign(key: Ed25519PrivateKey, record: CustodyRecord) -> str:
    """The base64 Ed25519 signature of the record's canonical bytes."""
    return base64.b64encode(key.sign(record.canonical())).decode("ascii")


def verify(public_key: str, record: CustodyRecord, signature: str) -> bool:
    """Whether `signature` is the device's signature of `record` (False on any malformed input)."""
    try:
        key = decode_public_key(public_key)
        raw = _b64(signature, SIGNATURE_BYTES, "signature")
        key.verify(raw, record.canonical())
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
