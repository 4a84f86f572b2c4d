"""The documents of the outbox's rows, built from the database when first delivered.

Each builder reads in the caller's transaction and returns the object key and the document
(unsigned), or None when there is nothing (any more) to write. A manifest waits (`NotReady`)
until every segment of its recording is verified or named by a gap report, or until
`grace` has passed since it finished: a segment still pending then is listed with
`verified: false` and its custody record, and the manifest is final (write-once), which
the vault reports as a segment the broker never saw arrive.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row

from broker.db.schema import audit_log, devices, recording_gaps, recordings, segments, users
from broker.db.scope import TenantScope
from shared.bucket import keys
from shared.bucket.metadata import custody_name
from shared.bucket.records import (
    AuditAnchor,
    DeviceRecord,
    Manifest,
    ManifestGap,
    ManifestSegment,
    Signed,
)
from shared.custody import timestamp_ms

VERIFIED = "verified"  # broker.recordings.common.VERIFIED (a higher layer)
FINISHED = "finished"


class NotReady(Exception):
    """The record cannot be written yet (a manifest whose segments are still arriving)."""


async def device(scope: TenantScope, prefix: str, device_id: str) -> tuple[str, Signed] | None:
    row = await scope.one(devices, devices.c.id == device_id)
    if row is None:
        return None
    person = await scope.one(users, users.c.id == row.user_id)
    doc = DeviceRecord(
        tenant_id=scope.tenant_id, device_id=row.id, user_id=row.user_id,
        user_email=person.email if person is not None else "", device_name=row.name,
        public_key=row.public_key, enrolled_at_ms=timestamp_ms(row.created_at),
    )
    return keys.device_key(prefix, row.id), doc


async def anchor(scope: TenantScope, prefix: str, seq: str) -> tuple[str, Signed] | None:
    row = await scope.one(audit_log, audit_log.c.seq == int(seq))
    if row is None:
        return None
    doc = AuditAnchor(
        tenant_id=scope.tenant_id, seq=row.seq, hash=row.hash, mac=row.mac,
        mac_key=row.mac_key, at=row.at.isoformat(),
    )
    return keys.anchor_key(prefix, scope.tenant_id, row.seq), doc


async def manifest(
    scope: TenantScope, prefix: str, recording_id: str, *, now: datetime, grace: timedelta
) -> tuple[str, Signed] | None:
    rec = await scope.one(recordings, recordings.c.id == recording_id)
    if rec is None:
        return None
    if rec.state != FINISHED or rec.finished_at is None:
        raise NotReady("the recording is not finished")
    rows = await scope.all(
        segments, segments.c.recording_id == recording_id, order_by=[segments.c.seq]
    )
    gap_rows = await scope.all(
        recording_gaps, recording_gaps.c.recording_id == recording_id,
        order_by=[recording_gaps.c.reported_at, recording_gaps.c.id],
    )
    gaps = tuple(
        ManifestGap(
            seqs=tuple(sorted({int(x) for x in json.loads(g.seqs)})), reason=g.reason,
            from_ms=None if g.gap_from is None else timestamp_ms(g.gap_from),
            to_ms=None if g.gap_to is None else timestamp_ms(g.gap_to),
            reported_at_ms=timestamp_ms(g.reported_at), signature=g.signature,
        )
        for g in gap_rows
    )
    named = {seq for g in gaps for seq in g.seqs}
    waiting = [r.seq for r in rows if r.state != VERIFIED and r.seq not in named]
    if waiting and now < rec.finished_at + grace:
        raise NotReady(f"segments {waiting[:5]} are still arriving")
    listed = tuple(_segment(r) for r in rows)
    signed = [s for s in listed if s.record_hash is not None]
    doc = Manifest(
        tenant_id=scope.tenant_id, user_id=rec.user_id, recording_id=rec.id,
        device_id=rec.device_id, started_at_ms=timestamp_ms(rec.started_at),
        finished_at_ms=timestamp_ms(rec.finished_at),
        ended="agent_died" if any(g.reason == "agent_died" and not g.seqs for g in gaps)
        else "finished",
        segments=listed, gaps=gaps,
        chain_head=signed[-1].record_hash if signed and signed[-1] is listed[-1] else None,
        written_at_ms=timestamp_ms(now),
    )
    return keys.manifest_key(prefix, scope.tenant_id, rec.user_id, rec.id), doc


def _segment(row: Row[Any]) -> ManifestSegment:
    signed = row.record_signature is not None
    return ManifestSegment(
        seq=row.seq, key=row.object_key, size=row.size, sha256=row.sha256,
        started_at_ms=timestamp_ms(row.started_at), duration_ms=row.duration_ms,
        verified=row.state == VERIFIED, custody=custody_name(row.record_version, signed),
        prev=row.record_prev if signed else None,
        record_hash=row.record_hash if signed else None,
        signature=row.record_signature if signed else None,
    )
