"""Chain of custody on the broker: admit signed segment records, and re-check a recording.

At an upload grant the broker rebuilds the segment's record (`shared.custody`) from the
path's recording id and seq and the declared size and SHA-256, takes `prev` from the agent,
and checks it with the public key stored on the device row at enrollment — never a key the
request brings. The chain link is checked against the records already stored for the
neighbouring segments. A device enrolled without a key (an older agent) uploads unsigned
segments; once a key is registered, every segment must carry a valid record.

Records of format v2 also sign the segment's declared start and duration (the broker tries
v2 first, then v1 for older agents, and stores which one verified); gap reports may carry the
device's signature, which must then verify.

`verify_recording` re-checks a whole recording later: every record's signature and chain
link, and every object's stored SHA-256 checksum through `HeadObject` with checksum mode —
never the object's content (DESIGN G1) — reporting missing, altered, reordered and (v2)
re-timed segments, forged or (once the device signs v2) unsigned gap reports, and which
record format the recording's segments carry (`v1` records cover no times).
"""

from __future__ import annotations

import asyncio
import functools
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Row

from broker.db.schema import devices, recording_gaps, recordings, segments
from broker.db.scope import TenantScope
from broker.errors import Conflict, NotFound
from broker.storage.config import StorageConfig
from broker.storage.s3 import BucketClients, ObjectHead
from shared.custody import (
    GENESIS,
    V1,
    V2,
    CustodyRecord,
    GapRecord,
    timestamp_ms,
    verify,
    verify_canonical,
)
from shared.errors import ErrorCode
from shared.wire import GapReport, UploadRequest

# The device path's signature checks, remembered: a completion checks the very record its
# grant verified moments before (Ed25519 verification is a pure function of key, record and
# signature, so a remembered answer is the answer; a stored record altered since is other
# bytes, checked afresh). Bounded: about 0.5 kB an entry.
_verifies = functools.lru_cache(maxsize=4096)(verify_canonical)


def _device_path_verify(public_key: str, record: CustodyRecord, signature: str) -> bool:
    return _verifies(public_key, record.canonical(), signature)


HEAD_LANES = 2  # HeadObject calls at once per verification (the tenant may have 4 in all)


def _refuse(message: str) -> Conflict:
    return Conflict(message, code=ErrorCode.CUSTODY_REJECTED)


async def device_key(scope: TenantScope, device_id: str | None) -> str | None:
    if device_id is None:
        return None
    device = await scope.one(devices, devices.c.id == device_id)
    return None if device is None else device.public_key


def record_of(
    recording_id: str, seq: int, size: int, sha256: str, prev: str, *,
    version: int = V1, started_at: datetime | None = None, duration_ms: int | None = None,
) -> CustodyRecord:
    if version == V1:
        return CustodyRecord(
            recording_id=recording_id, seq=seq, size=size, sha256=sha256, prev=prev
        )
    return CustodyRecord(
        recording_id=recording_id, seq=seq, size=size, sha256=sha256, prev=prev, version=V2,
        started_at_ms=None if started_at is None else timestamp_ms(started_at),
        duration_ms=duration_ms,
    )


def stored_record(recording_id: str, row: Row[Any]) -> CustodyRecord:
    """A segment row's record, rebuilt from the row as the database holds it now."""
    version = row.record_version or V1
    return record_of(
        recording_id, row.seq, row.size, row.sha256, row.record_prev, version=version,
        started_at=row.started_at, duration_ms=row.duration_ms,
    )


def gap_record(recording_id: str, gap: Row[Any]) -> GapRecord:
    return GapRecord.of(
        recording_id, [int(x) for x in json.loads(gap.seqs)], gap.reason, gap.gap_from,
        gap.gap_to,
    )


def admit(
    recording: Row[Any], seq: int, declared: UploadRequest, public_key: str | None, *,
    before: Row[Any] | None, after: Row[Any] | None,
) -> dict[str, Any]:
    """The custody columns of a newly declared segment, after checking its record with
    `public_key`, the one stored on the recording's device row, and its chain links with
    `before` and `after`, the recording's declared segments nearest below and above `seq`
    (the caller read all three in this transaction).

    Raises a 409 `custody_rejected` naming what is wrong.
    """
    proof = declared.custody
    if public_key is None:
        if proof is not None:
            raise _refuse("this device registered no custody key; it cannot sign segments")
        return {}
    if proof is None:
        raise _refuse(f"segment {seq} carries no chain-of-custody record; this device must sign")
    # v2 (start and duration signed) first; v1 from agents that predate it.
    for version in (V2, V1):
        record = record_of(
            recording.id, seq, declared.size, declared.sha256, proof.prev, version=version,
            started_at=declared.started_at, duration_ms=declared.duration_ms,
        )
        if _device_path_verify(public_key, record, proof.signature):
            break
    else:
        raise _refuse(
            f"the custody record of segment {seq} is not signed by this device's key "
            "(or names another recording, seq, size, SHA-256, start or duration)"
        )
    digest = record.digest()
    if seq == 0:
        if proof.prev != GENESIS:
            raise _refuse("the first segment's record must start the chain")
    elif before is not None and before.seq == seq - 1 and before.record_hash != proof.prev:
        raise _refuse(
            f"the custody record of segment {seq} does not follow segment {seq - 1}'s "
            "(broken chain link)"
        )
    if after is not None and after.seq == seq + 1 and after.record_prev != digest:
        raise _refuse(
            f"segment {seq + 1}'s custody record does not follow this one (broken chain link)"
        )
    return {
        "record_prev": proof.prev, "record_hash": digest, "record_signature": proof.signature,
        "record_version": record.version,
    }


async def admit_gap(scope: TenantScope, recording: Row[Any], gap: GapReport) -> str | None:
    """The signature to store with a gap report, after checking it with the device's key.

    A report from a device with a key that carries a signature must verify (409
    `custody_rejected` otherwise); an unsigned one (an agent before custody v2) is stored
    unsigned, and `verify-recording` names it so."""
    if gap.signature is None:
        return None
    public_key = await device_key(scope, recording.device_id)
    if public_key is None:
        raise _refuse("this device registered no custody key; it cannot sign gap reports")
    record = GapRecord.of(recording.id, gap.seqs, gap.reason, gap.from_, gap.to)
    if not verify(public_key, record, gap.signature):
        raise _refuse(
            "the gap report is not signed by this device's key (or names another recording, "
            "segments, reason or time range)"
        )
    return gap.signature


def check_regrant(segment: Row[Any], declared: UploadRequest) -> None:
    """A new grant for a declared segment must carry the very record stored for it."""
    proof = declared.custody
    stored = segment.record_signature
    given = None if proof is None else (proof.prev, proof.signature)
    if (stored is None) != (given is None) or (
        given is not None and given != (segment.record_prev, stored)
    ):
        raise _refuse(f"segment {segment.seq} was declared with another custody record before")


def check_stored(recording: Row[Any], segment: Row[Any], public_key: str | None) -> None:
    """At completion: the stored record still verifies with the device's stored key (read by
    the caller from the recording's device row in this transaction)."""
    if public_key is None:
        return
    if segment.record_signature is None or segment.record_prev is None:
        raise _refuse(f"segment {segment.seq} has no custody record")
    record = stored_record(recording.id, segment)
    if record.digest() != segment.record_hash or not _device_path_verify(
        public_key, record, segment.record_signature
    ):
        raise _refuse(f"the stored custody record of segment {segment.seq} does not verify")


@dataclass(slots=True)
class Finding:
    seq: int  # -1 for a gap report that names no segment
    # missing | altered | reordered | unsigned | forged | broken_link | retimed
    # | forged_gap | unsigned_gap
    kind: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "detail": self.detail}


@dataclass(slots=True)
class VerifyReport:
    recording_id: str
    segments: int = 0
    verified: int = 0  # segments whose record and object both check out
    findings: list[Finding] = field(default_factory=list)
    # how many segment records are of each format: v1 covers the bytes and the chain only,
    # v2 also the declared start and duration
    record_versions: dict[str, int] = field(default_factory=dict)
    gaps: int = 0
    signed_gaps: int = 0

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def record_format(self) -> str:
        present = sorted(v for v, n in self.record_versions.items() if n)
        if not present:
            return "unsigned"
        return present[0] if len(present) == 1 else "mixed"

    def to_json(self) -> dict[str, Any]:
        return {
            "recording_id": self.recording_id,
            "ok": self.ok,
            "segments": self.segments,
            "verified": self.verified,
            "record_format": self.record_format,
            "record_versions": dict(sorted(self.record_versions.items())),
            "times_signed": self.record_format == "v2",
            "gaps": self.gaps,
            "signed_gaps": self.signed_gaps,
            "findings": [f.to_json() for f in self.findings],
        }


@dataclass(frozen=True, slots=True)
class CustodyState:
    """What the database holds about a recording's custody, read in one transaction."""

    recording_id: str
    public_key: str | None
    rows: list[Row[Any]]
    reported: dict[int, str]  # seq -> reason, from the agent's gap reports
    gap_rows: list[Row[Any]] = field(default_factory=list)


async def load_state(scope: TenantScope, recording_id: str) -> CustodyState:
    recording = await scope.one(recordings, recordings.c.id == recording_id)
    if recording is None:
        raise NotFound("no such recording in this tenant")
    rows = await scope.all(
        segments, segments.c.recording_id == recording_id, order_by=[segments.c.seq]
    )
    gap_rows = await scope.all(recording_gaps, recording_gaps.c.recording_id == recording_id)
    reported: dict[int, str] = {}
    for gap in gap_rows:
        for seq in json.loads(gap.seqs):
            reported[int(seq)] = gap.reason
    return CustodyState(
        recording_id, await device_key(scope, recording.device_id), rows, reported, gap_rows
    )


def _check_record(
    report: VerifyReport, recording_id: str, public_key: str, row: Row[Any],
    by_seq: dict[int, Row[Any]], content_intact: bool,
) -> None:
    version = row.record_version or V1
    report.record_versions[f"v{version}"] = report.record_versions.get(f"v{version}", 0) + 1
    record = stored_record(recording_id, row)
    if record.digest() != row.record_hash or not verify(
        public_key, record, row.record_signature
    ):
        before = by_seq.get(row.seq - 1)
        chain_intact = row.seq == 0 or before is None or before.record_hash == row.record_prev
        if version == V2 and content_intact and chain_intact:
            report.findings.append(Finding(
                row.seq, "retimed",
                "the signed record does not match the segment's start or duration as stored: "
                "the segment was re-timed after the device signed it",
            ))
        else:
            report.findings.append(
                Finding(row.seq, "forged", "the record does not verify with the device key")
            )
    elif row.seq == 0 and row.record_prev != GENESIS:
        report.findings.append(
            Finding(row.seq, "broken_link", "the first record does not start the chain")
        )
    elif row.seq > 0 and (prev := by_seq.get(row.seq - 1)) is not None and (
        prev.record_hash != row.record_prev
    ):
        report.findings.append(
            Finding(row.seq, "reordered", f"the record does not follow seq {row.seq - 1}'s")
        )


def _check_gaps(report: VerifyReport, state: CustodyState) -> None:
    """Signed gap reports must verify; unsigned ones are findings once the device signs its
    segments' times (v2), except the broker's own note that an agent died (no segments)."""
    speaks_v2 = report.record_versions.get("v2", 0) > 0
    for gap in state.gap_rows:
        report.gaps += 1
        seqs = [int(x) for x in json.loads(gap.seqs)]
        where = min(seqs) if seqs else -1
        if gap.signature is not None:
            if state.public_key is not None and verify(
                state.public_key, gap_record(state.recording_id, gap), gap.signature
            ):
                report.signed_gaps += 1
            else:
                report.findings.append(Finding(
                    where, "forged_gap",
                    f"the gap report ({gap.reason}) does not verify with the device key",
                ))
        elif speaks_v2 and state.public_key is not None and not (
            gap.reason == "agent_died" and not seqs
        ):
            report.findings.append(Finding(
                where, "unsigned_gap",
                f"the gap report ({gap.reason}) carries no device signature",
            ))


async def verify_recording(
    state: CustodyState, buckets: BucketClients, config: StorageConfig
) -> VerifyReport:
    """Re-check a recording's chain, signed times and gaps, and each object's stored
    checksum (HeadObject only).

    Runs outside any database transaction: it waits on the bucket.
    """
    recording_id, public_key, rows = state.recording_id, state.public_key, state.rows
    reported = state.reported
    report = VerifyReport(recording_id, segments=len(rows))
    by_seq = {r.seq: r for r in rows}
    last = max(by_seq) if by_seq else -1
    for seq in sorted(set(range(last + 1)) | set(reported)):
        if seq not in by_seq:
            why = f" (reported by the agent: {reported[seq]})" if seq in reported else ""
            report.findings.append(Finding(seq, "missing", f"never declared{why}"))

    record_seq = {r.sha256: r.seq for r in rows}
    bucket = await buckets.client(config)
    lanes = asyncio.Semaphore(HEAD_LANES)  # within the tenant's share of the storage pool

    async def head_of(key: str) -> ObjectHead | None:
        async with lanes:
            return await buckets.head(bucket, key)

    heads = await asyncio.gather(*(head_of(r.object_key) for r in rows))
    for row, head in zip(rows, heads, strict=True):
        before = len(report.findings)
        content_intact = head is not None and (head.sha256, head.size) == (row.sha256, row.size)
        if public_key is None or row.record_signature is None or row.record_prev is None:
            report.findings.append(Finding(row.seq, "unsigned", "no chain-of-custody record"))
        else:
            _check_record(report, recording_id, public_key, row, by_seq, content_intact)
        if head is None:
            report.findings.append(Finding(row.seq, "missing", f"no object at {row.object_key}"))
        elif not content_intact:
            other = record_seq.get(head.sha256 or "")
            if other is not None and other != row.seq:
                report.findings.append(
                    Finding(row.seq, "reordered", f"the object holds the bytes of seq {other}")
                )
            else:
                stored = "no SHA-256 checksum" if head.sha256 is None else "another SHA-256"
                report.findings.append(
                    Finding(row.seq, "altered", f"the object carries {stored} ({head.size} bytes)")
                )
        if len(report.findings) == before:
            report.verified += 1
    _check_gaps(report, state)
    report.findings.sort(key=lambda f: (f.seq, f.kind))
    return report
