"""A segment object's own proof: its custody record as S3 user metadata.

The upload grant signs these into the presigned PUT (S3 returns them as `x-amz-meta-<name>`
on GET and HEAD), so an agent that leaves one off or changes it fails S3's signature check,
and the object explains itself: whose it is, which recording and place, its size and SHA-256,
its declared times, the previous record's hash, and the device's Ed25519 signature of the
record (`shared.custody.CustodyRecord`). All values are ASCII; the whole stays far below S3's
2 KB limit on user metadata (`MAX_METADATA_BYTES`).

A segment of a device without a custody key (an older agent) says `custody: unsigned` and
carries `prev` and `signature` as `unsigned`; `device` is `none` for a recording that names no
device.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared.bucket.records import FORMAT, BucketFormatError
from shared.custody import V1, V2, CustodyRecord, is_record_hash, verify

HEADER_PREFIX = "x-amz-meta-"
MAX_METADATA_BYTES = 2048  # S3: the user metadata's names and values, UTF-8, together
UNSIGNED = "unsigned"
NO_DEVICE = "none"
_CUSTODY = {V1: "v1", V2: "v2"}
FIELDS = (
    "bucketreel", "tenant", "user", "device", "recording", "seq", "size", "sha256",
    "started-at-ms", "duration-ms", "prev", "custody", "signature",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentMetadata:
    tenant_id: str
    user_id: str
    device_id: str | None
    recording_id: str
    seq: int
    size: int
    sha256: str  # base64
    started_at_ms: int
    duration_ms: int
    custody: str  # "v1" | "v2" | "unsigned"
    prev: str | None  # hex; None when unsigned
    signature: str | None  # base64; None when unsigned
    format: int = FORMAT

    def to_metadata(self) -> dict[str, str]:
        """The user metadata by name (boto3's `Metadata`, without `x-amz-meta-`)."""
        values = (
            str(self.format), self.tenant_id, self.user_id, self.device_id or NO_DEVICE,
            self.recording_id, str(self.seq), str(self.size), self.sha256,
            str(self.started_at_ms), str(self.duration_ms), self.prev or UNSIGNED,
            self.custody, self.signature or UNSIGNED,
        )
        meta = dict(zip(FIELDS, values, strict=True))
        for name, value in meta.items():
            if not value.isascii() or not value.isprintable():
                raise BucketFormatError(f"metadata {name} must be printable ASCII")
        if sum(len(k) + len(v) for k, v in meta.items()) > MAX_METADATA_BYTES:
            raise BucketFormatError(f"the metadata exceeds S3's {MAX_METADATA_BYTES} bytes")
        return meta

    def headers(self) -> dict[str, str]:
        """The same as the HTTP headers of the PUT."""
        return {HEADER_PREFIX + k: v for k, v in self.to_metadata().items()}

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str]) -> SegmentMetadata:
        """Parse what HeadObject/GetObject return as `Metadata` (names lower-cased; a
        leading `x-amz-meta-` is taken off). BucketFormatError names what is wrong."""
        clean = {
            k.lower().removeprefix(HEADER_PREFIX): v for k, v in meta.items()
        }
        missing = [f for f in FIELDS if f not in clean]
        if missing:
            raise BucketFormatError(f"the object carries no {', '.join(missing)} metadata")
        try:
            fmt, seq, size, started, duration = (
                int(clean[f]) for f in ("bucketreel", "seq", "size", "started-at-ms", "duration-ms")
            )
        except ValueError:
            raise BucketFormatError("a number in the metadata is not a number") from None
        if fmt != FORMAT:
            raise BucketFormatError(f"metadata format {fmt} is not {FORMAT}")
        custody = clean["custody"]
        if custody not in (*_CUSTODY.values(), UNSIGNED):
            raise BucketFormatError(f"unknown custody format {custody!r}")
        prev = None if clean["prev"] == UNSIGNED else clean["prev"]
        signature = None if clean["signature"] == UNSIGNED else clean["signature"]
        if custody != UNSIGNED and (prev is None or signature is None or not is_record_hash(prev)):
            raise BucketFormatError("a signed segment's metadata lacks its prev or signature")
        return cls(
            format=fmt, tenant_id=clean["tenant"], user_id=clean["user"],
            device_id=None if clean["device"] == NO_DEVICE else clean["device"],
            recording_id=clean["recording"], seq=seq, size=size, sha256=clean["sha256"],
            started_at_ms=started, duration_ms=duration, custody=custody, prev=prev,
            signature=signature,
        )

    def record(self) -> CustodyRecord | None:
        """The custody record the device signed, rebuilt from these fields (None: unsigned)."""
        if self.custody == UNSIGNED or self.prev is None:
            return None
        if self.custody == "v1":
            return CustodyRecord(
                recording_id=self.recording_id, seq=self.seq, size=self.size,
                sha256=self.sha256, prev=self.prev,
            )
        return CustodyRecord(
            recording_id=self.recording_id, seq=self.seq, size=self.size, sha256=self.sha256,
            prev=self.prev, version=V2, started_at_ms=self.started_at_ms,
            duration_ms=self.duration_ms,
        )

    def verify(self, public_key: str) -> bool:
        """Whether the device key signed this record (False when unsigned)."""
        record = self.record()
        return record is not None and self.signature is not None and verify(
            public_key, record, self.signature
        )


def custody_name(version: int | None, signed: bool) -> str:
    """"v1"/"v2" for a signed record of that format, "unsigned" otherwise."""
    if not signed:
        return UNSIGNED
    return _CUSTODY.get(version or V1, UNSIGNED)
