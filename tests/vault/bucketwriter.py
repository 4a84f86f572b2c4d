"""Recordings written into a bucket in the bucket format (`shared.bucket`), as the broker and
the agent write them, for the vault's tests that need many shapes of recording quickly.

The segments are real: frames encoded by the agent's own `Segmenter` and sealed by its
`CustodyChain` with a real device key; the control records are signed with a real broker key
(`shared.bucket.records.BrokerSigner`) and written with `If-None-Match: *`. The end-to-end test
(test_vault_e2e.py) has the real agent and broker write instead.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.capture import Frame
from agent.custody import CustodyChain, DeviceKey
from agent.encode import Segment, Segmenter
from shared.auditchain import GENESIS as AUDIT_GENESIS
from shared.auditchain import details_text, entry_hash
from shared.bucket import keys, records
from shared.bucket.metadata import SegmentMetadata
from shared.bucket.records import (
    AuditAnchor,
    BrokerSigner,
    DeviceRecord,
    Manifest,
    ManifestGap,
    ManifestSegment,
)
from shared.custody import GapRecord, timestamp_ms
from shared.keys import segment_key
from shared.wire import format_timestamp, parse_timestamp

FPS = 2
SEGMENT_SECONDS = 2
WIDTH, HEIGHT = 64, 48


def as_sent(value: datetime) -> int:
    return timestamp_ms(parse_timestamp(format_timestamp(value)))


@dataclass
class Written:
    tenant_id: str
    user_id: str
    email: str
    device_id: str
    recording_id: str
    segments: list[SegmentMetadata]
    keys: list[str]  # segment object keys, by seq
    manifest_key: str | None
    durations: list[int] = field(default_factory=list)

    @property
    def started_at(self) -> datetime:
        return datetime.fromtimestamp(self.segments[0].started_at_ms / 1000, UTC)


def frames(count: int, start: datetime, pause: tuple[int, float] | None = None,
           resize_after: int | None = None) -> list[Frame]:
    """`count` frames of noise (every one different), a tick each, from `start`; `pause`
    (after segment k, seconds): the screen was not recorded for that long after segment k;
    `resize_after` (segment k): the screen's resolution changes after segment k."""
    after, skipped = (count, 0) if pause is None else (
        (pause[0] + 1) * FPS * SEGMENT_SECONDS, round(pause[1] * FPS)
    )
    resized = count if resize_after is None else (resize_after + 1) * FPS * SEGMENT_SECONDS
    made = []
    for t in range(count):
        skip = skipped if t >= after else 0
        width, height = (WIDTH, HEIGHT) if t < resized else (WIDTH * 2, HEIGHT * 2)
        made.append(Frame(
            raw=secrets.token_bytes(width * height * 4), width=width, height=height,
            tick=t + skip, captured_at=start + timedelta(seconds=(t + skip) / FPS),
        ))
    return made


def encode(count: int, start: datetime, pause: tuple[int, float] | None = None,
           resize_after: int | None = None) -> list[Segment]:
    segmenter = Segmenter(fps=FPS, segment_seconds=SEGMENT_SECONDS)
    done: list[Segment] = []
    for frame in frames(count * FPS * SEGMENT_SECONDS, start, pause, resize_after):
        done += segmenter.push(frame)
    last = segmenter.flush()
    if last is not None:
        done.append(last)
    return done


class BucketWriter:
    """Writes with the bucket owner's client (`s3`): what the broker and agent would."""

    def __init__(self, s3: Any, bucket: str, prefix: str = "rec") -> None:
        self.s3, self.bucket, self.prefix = s3, bucket, prefix
        self.signer = BrokerSigner(Ed25519PrivateKey.generate())
        self.tenant_id = f"tenant-{secrets.token_hex(4)}"
        self._put(keys.broker_key_key(prefix, self.signer.key_id),
                  records.encode(self.signer.record(created_at_ms=timestamp_ms(datetime.now(UTC)))))
        self.audit: list[dict[str, Any]] = []
        self.keyless: set[str] = set()

    def _put(self, key: str, body: bytes, **extra: Any) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*", **extra)

    def enroll(self, email: str | None = None, *, keyless: bool = False
               ) -> tuple[str, str, str, DeviceKey]:
        """A person and their device; returns (user id, email, device id, device key).
        `keyless`: an older agent's device, registered without a key (it signs nothing)."""
        user_id = f"user-{secrets.token_hex(4)}"
        email = email or f"{user_id}@example.test"
        device_id = f"device-{secrets.token_hex(4)}"
        key = DeviceKey.generate()
        if keyless:
            self.keyless.add(device_id)
        record = self.signer.sign(DeviceRecord(
            tenant_id=self.tenant_id, device_id=device_id, user_id=user_id, user_email=email,
            device_name="test workstation", public_key=None if keyless else key.public_key,
            enrolled_at_ms=timestamp_ms(datetime.now(UTC)),
        ))
        self._put(keys.device_key(self.prefix, device_id), records.encode(record))
        return user_id, email, device_id, key

    def record(
        self, person: tuple[str, str, str, DeviceKey], *, segments: int = 3,
        start: datetime | None = None, manifest: bool = True, drop: tuple[int, ...] = (),
        gap_signed: bool = True, pause: tuple[int, float] | None = None,
        resize_after: int | None = None,
    ) -> Written:
        """A recording of `segments` segments; `drop`: seqs sealed but never uploaded, reported
        as a gap (signed by the device unless `gap_signed` is False)."""
        user_id, email, device_id, device_key = person
        recording_id = f"rec-{secrets.token_hex(6)}"
        start = start or datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
        chain = CustodyChain(device_key, recording_id)
        written = Written(self.tenant_id, user_id, email, device_id, recording_id, [], [], None)
        entries: list[ManifestSegment] = []
        keyless = device_id in self.keyless
        for segment in encode(segments, start, pause, resize_after):
            proof = None if keyless else chain.seal(segment).custody
            meta = SegmentMetadata(
                tenant_id=self.tenant_id, user_id=user_id, device_id=device_id,
                recording_id=recording_id, seq=segment.seq, size=segment.size,
                sha256=segment.sha256_b64(), started_at_ms=as_sent(segment.started_at),
                duration_ms=segment.duration_ms, custody="unsigned" if keyless else "v2",
                prev=proof.prev if proof else None, signature=proof.signature if proof else None,
            )
            assert keyless or meta.verify(device_key.public_key)
            key = segment_key(self.prefix, self.tenant_id, user_id, recording_id, segment.seq)
            record = meta.record()
            if segment.seq not in drop:
                self._put(key, segment.data, Metadata=meta.to_metadata(),
                          ChecksumSHA256=segment.sha256_b64(), ContentType="video/mp4")
                written.segments.append(meta)
                written.keys.append(key)
                written.durations.append(segment.duration_ms)
                entries.append(ManifestSegment(
                    seq=meta.seq, key=key, size=meta.size, sha256=meta.sha256,
                    started_at_ms=meta.started_at_ms, duration_ms=meta.duration_ms,
                    verified=True, custody=meta.custody, prev=meta.prev,
                    record_hash=record.digest() if record else None, signature=meta.signature,
                ))
        gaps: list[ManifestGap] = []
        if drop:
            gap = GapRecord(recording_id=recording_id, seqs=tuple(sorted(drop)), reason="refused")
            gaps.append(ManifestGap(
                seqs=gap.seqs, reason=gap.reason, reported_at_ms=written.segments[-1].started_at_ms,
                signature=device_key.sign(gap) if gap_signed else None,
            ))
        if pause is not None:
            after = written.segments[pause[0]]
            idle = GapRecord(
                recording_id=recording_id, seqs=(), reason="idle",
                from_ms=after.started_at_ms + after.duration_ms,
                to_ms=written.segments[pause[0] + 1].started_at_ms,
            )
            gaps.append(ManifestGap(seqs=(), reason="idle", from_ms=idle.from_ms,
                                    to_ms=idle.to_ms, reported_at_ms=idle.to_ms or 0,
                                    signature=device_key.sign(idle)))
        if manifest:
            written.manifest_key = self.manifest(written, entries, gaps)
        return written

    def manifest(
        self, written: Written, entries: list[ManifestSegment], gaps: list[ManifestGap],
        signer: BrokerSigner | None = None,
    ) -> str:
        last = written.segments[-1]
        doc = (signer or self.signer).sign(Manifest(
            tenant_id=self.tenant_id, user_id=written.user_id,
            recording_id=written.recording_id, device_id=written.device_id,
            started_at_ms=written.segments[0].started_at_ms,
            finished_at_ms=last.started_at_ms + last.duration_ms, ended="finished",
            segments=tuple(entries), gaps=tuple(gaps),
            chain_head=entries[-1].record_hash if entries else None,
            written_at_ms=timestamp_ms(datetime.now(UTC)),
        ))
        key = keys.manifest_key(self.prefix, self.tenant_id, written.user_id, written.recording_id)
        self._put(key, records.encode(doc))
        return key

    # -- the audit log and its anchors ----------------------------------------------------

    def audit_entry(self, action: str, target: str, details: dict[str, Any] | None = None) -> None:
        """One entry of the tenant's chain, as the broker hashes it (the export's line)."""
        seq = len(self.audit) + 1
        prev = self.audit[-1]["hash"] if self.audit else AUDIT_GENESIS
        at = datetime(2026, 3, 2, 10, 0, tzinfo=UTC) + timedelta(seconds=seq)
        line = {
            "tenant_id": self.tenant_id, "seq": seq, "at": at.isoformat(), "actor": "admin",
            "action": action, "target": target, "details": details or {}, "prev_hash": prev,
            "mac": hashlib.sha256(f"mac{seq}".encode()).hexdigest(), "mac_key": "v1",
        }
        line["hash"] = entry_hash(
            tenant_id=self.tenant_id, seq=seq, at=line["at"], actor="admin", action=action,
            target=target, details=details_text(line["details"]), prev_hash=prev,
        )
        self.audit.append(line)

    def anchor(self) -> str:
        """Anchor the chain's head in the bucket, as the broker does."""
        head = self.audit[-1]
        doc = self.signer.sign(AuditAnchor(
            tenant_id=self.tenant_id, seq=head["seq"], hash=head["hash"], mac=head["mac"],
            mac_key=head["mac_key"], at=head["at"],
        ))
        key = keys.anchor_key(self.prefix, self.tenant_id, head["seq"])
        self._put(key, records.encode(doc))
        return key

    def export_lines(self) -> str:
        return "".join(json.dumps(line, sort_keys=True) + "\n" for line in self.audit)

