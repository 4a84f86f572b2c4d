"""The JSON documents the broker writes beside the recordings, and their broker signatures.

Each document is a frozen msgspec Struct with `format` and `kind`. A signed one carries the
signing key's `key_id` and `signature`: base64 Ed25519 over `signed_bytes(doc)`, which is a
context line naming the kind (`bucketreel-bucket-<kind>-v1\\n`) followed by the document's
fields except `signature`, as JSON with sorted keys, no spaces, ASCII only. A signature made
for one kind never verifies as another. The bytes written to the bucket are `encode(doc)`
(sorted, indented: readable, and identical on every retry, as Ed25519 signatures are
deterministic).

Times are Unix milliseconds (`*_ms`), as the device signs them (`shared.custody`), except an
audit anchor's `at`, which is the audit entry's own ISO 8601 text (its chain hash covers that
text).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from shared.custody import SIGNATURE_BYTES, CustodyFormatError, decode_public_key

FORMAT = 1
ALGORITHM = "Ed25519"
KEY_ID_HEX = 16
UNSIGNED = ""  # `signature` / `key_id` of a document not signed yet


class BucketFormatError(ValueError):
    """An object in the bucket is not of the form this format version describes."""


class _Doc(msgspec.Struct, frozen=True, kw_only=True):
    format: int = FORMAT


class BrokerKey(_Doc, frozen=True, kw_only=True, tag_field="kind", tag="broker_key"):
    """`_bucketreel/keys/<key_id>.json`: a broker public key. Not signed: `key_id` is the
    first 16 hex digits of the SHA-256 of the raw 32-byte key, so the record names itself."""

    key_id: str
    algorithm: str = ALGORITHM
    public_key: str  # base64 of the raw 32 bytes
    created_at_ms: int


class DeviceRecord(_Doc, frozen=True, kw_only=True, tag_field="kind", tag="device"):
    """`_bucketreel/devices/<device_id>.json`: who a device key belongs to, from enrollment."""

    tenant_id: str
    device_id: str
    user_id: str
    user_email: str
    device_name: str
    public_key: str | None  # base64 Ed25519; None: an older agent that signs nothing
    enrolled_at_ms: int
    key_id: str = UNSIGNED
    signature: str = UNSIGNED


class ManifestSegment(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    key: str
    size: int
    sha256: str  # base64, as declared and as S3 checked it on the PUT
    started_at_ms: int
    duration_ms: int
    verified: bool  # the broker saw the object (HeadObject: size and checksum) before writing
    custody: str  # "v1" | "v2" | "unsigned" (the device's record format)
    prev: str | None  # the record's `prev` (hex), None when unsigned
    record_hash: str | None  # the record's digest (hex): the next segment's `prev`
    signature: str | None  # the device's signature (base64), None when unsigned


class ManifestGap(msgspec.Struct, frozen=True, kw_only=True):
    """A gap as reported (`shared.custody.GapRecord` fields) with the device's signature;
    `signature` None for an unsigned report (older agents, or the broker's `agent_died` note
    when a device's next recording closed this one)."""

    seqs: tuple[int, ...]
    reason: str
    from_ms: int | None = None
    to_ms: int | None = None
    reported_at_ms: int
    signature: str | None = None


class Manifest(_Doc, frozen=True, kw_only=True, tag_field="kind", tag="manifest"):
    """`<tenant>/<user>/<recording>/manifest.json`: the recording as the broker knew it when
    it was finished (`ended`: "finished" by its agent, "agent_died" when closed for it)."""

    tenant_id: str
    user_id: str
    recording_id: str
    device_id: str | None
    started_at_ms: int
    finished_at_ms: int
    ended: str
    segments: tuple[ManifestSegment, ...]
    gaps: tuple[ManifestGap, ...]
    chain_head: str | None  # record_hash of the highest seq, None when nothing is signed
    written_at_ms: int
    key_id: str = UNSIGNED
    signature: str = UNSIGNED


class AuditAnchor(_Doc, frozen=True, kw_only=True, tag_field="kind", tag="audit_anchor"):
    """`_bucketreel/audit/<tenant>/<seq:012d>.json`: the tenant's audit chain had entry `seq`
    with chain hash `hash` (`shared.auditchain.entry_hash`) and this MAC."""

    tenant_id: str
    seq: int
    hash: str
    mac: str | None
    mac_key: str | None
    at: str  # the entry's time, ISO 8601, exactly as the export and the chain hash have it
    key_id: str = UNSIGNED
    signature: str = UNSIGNED


Signed = DeviceRecord | Manifest | AuditAnchor
Document = BrokerKey | Signed
D = TypeVar("D", bound=Signed)

_CONTEXTS: dict[type[Any], bytes] = {
    DeviceRecord: b"bucketreel-bucket-device-v1\n",
    Manifest: b"bucketreel-bucket-manifest-v1\n",
    AuditAnchor: b"bucketreel-bucket-audit-anchor-v1\n",
}


def key_id_of(raw_public_key: bytes) -> str:
    return hashlib.sha256(raw_public_key).hexdigest()[:KEY_ID_HEX]


def signed_bytes(doc: Signed) -> bytes:
    """What the broker's signature covers: the kind's context, then every field but
    `signature` (sorted compact ASCII JSON, `kind` included)."""
    body = msgspec.to_builtins(doc)
    body.pop("signature", None)
    return _CONTEXTS[type(doc)] + json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=True
    ).encode("ascii")


def encode(doc: Document) -> bytes:
    """The object's bytes, the same on every write of the same document."""
    body = msgspec.to_builtins(doc)
    return (json.dumps(body, sort_keys=True, indent=2, ensure_ascii=True) + "\n").encode()


def decode(raw: bytes, kind: type[D] | type[BrokerKey]) -> Any:
    """The document of `kind` in `raw`; BucketFormatError when it is not one."""
    try:
        doc = msgspec.json.decode(raw, type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise BucketFormatError(f"not a {kind.__name__}: {exc}") from None
    if doc.format != FORMAT:
        raise BucketFormatError(f"format {doc.format} is not {FORMAT}")
    return doc


class BrokerSigner:
    """The broker's Ed25519 key: signs documents; `record` is its public key record."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private = private_key
        raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public_key = base64.b64encode(raw).decode("ascii")
        self.key_id = key_id_of(raw)

    @classmethod
    def from_seed(cls, seed: bytes) -> BrokerSigner:
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def __repr__(self) -> str:
        return f"BrokerSigner(key_id={self.key_id!r})"

    def record(self, created_at_ms: int) -> BrokerKey:
        return BrokerKey(
            key_id=self.key_id, public_key=self.public_key, created_at_ms=created_at_ms
        )

    def sign(self, doc: D) -> D:
        unsigned = msgspec.structs.replace(doc, key_id=self.key_id, signature=UNSIGNED)
        signature = base64.b64encode(self._private.sign(signed_bytes(unsigned))).decode("ascii")
        return msgspec.structs.replace(unsigned, signature=signature)


def check_key_record(key: BrokerKey) -> bool:
    """Whether a key record names itself truly (its key_id is its key's hash)."""
    try:
        raw = base64.b64decode(key.public_key, validate=True)
        decode_public_key(key.public_key)
    except (binascii.Error, ValueError, CustodyFormatError):
        return False
    return key.algorithm == ALGORITHM and key.key_id == key_id_of(raw)


def verify(doc: Signed, keys: Mapping[str, str]) -> bool:
    """Whether `doc` is signed by the key it names, among `keys` (key_id → base64 public
    key; give only keys whose records passed `check_key_record`). False on malformed input."""
    public = keys.get(doc.key_id)
    if public is None:
        return False
    try:
        raw = base64.b64decode(doc.signature, validate=True)
        if len(raw) != SIGNATURE_BYTES:
            return False
        decode_public_key(public).verify(raw, signed_bytes(doc))
    except (binascii.Error, ValueError, CustodyFormatError, InvalidSignature):
        return False
    return True

