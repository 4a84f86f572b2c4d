"""What the stages of a recording share: its states, the service's parts, the common reads.

`RecordingService` (broker/recordings/service.py) is put together from one class per stage
of the path a segment takes: `lifecycle` (start, finish, gaps), `uploads` (grant and
verified completion), `reads` (info, view URLs, custody checks). Each owns its transactions.
"""

from __future__ import annotations

import json
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Row, and_, bindparam, func, select, text

from broker.bucket import outbox
from broker.clock import Clock
from broker.db.database import Database
from broker.db.schema import (
    devices,
    recording_gaps,
    recordings,
    segments,
    storage_configs,
    upload_grants,
)
from broker.db.scope import TenantScope
from broker.devices.enrollment import check_enrolled
from broker.errors import NotFound
from broker.identity import Principal
from broker.recordings import bounds
from broker.settings import MasterKeys
from broker.storage import config as storage_config
from broker.storage.s3 import BucketClients
from broker.storage.service import StorageAccess
from shared.wire import GapInfo, RecordingInfo, SegmentInfo, format_timestamp

RECORDING = "recording"
FINISHED = "finished"
PENDING = "pending"
VERIFIED = "verified"


class RecordingParts:
    """The state every stage reads: the database, keys, bucket clients, TTLs, the clock."""

    def __init__(
        self,
        *,
        db: Database,
        keys: MasterKeys,
        buckets: BucketClients,
        upload_ttl: int,
        view_ttl: int,
        clock: Clock,
        storage: StorageAccess | None = None,
        clock_skew: int = bounds.DEFAULT_CLOCK_SKEW,
        wake: outbox.Wake | None = None,
    ) -> None:
        self._wake = wake  # the bucket outbox's flusher (`broker.bucket`)
        # unsealed storage configurations, each valid for its row (`storage.config`)
        self._configs = storage_config.ConfigCache()
        self._storage = storage  # revocation checks (DESIGN G6)
        self._skew = timedelta(seconds=clock_skew)  # declared times: broker.recordings.bounds
        self._db = db
        self._keys = keys
        self._buckets = buckets
        self._upload_ttl = upload_ttl
        self._view_ttl = view_ttl
        self._clock = clock


def actor(principal: Principal) -> str:
    return f"{principal.kind}:{principal.subject}"


# The device path's reads, built once (bound per call: no statement rebuilt per request).
_RECORDING = select(recordings).where(
    recordings.c.tenant_id == bindparam("tenant"), recordings.c.id == bindparam("recording")
)
_SEGMENT = select(segments).where(
    segments.c.tenant_id == bindparam("tenant"),
    segments.c.recording_id == bindparam("recording"),
    segments.c.seq == bindparam("seq"),
)


# The calling device's row and, when it made it, the recording (all NULL else), with the
# tenant's storage configuration row (its columns as `storage_<name>`, NULL when there is
# none; at most one: `tenant_id` is its key): one read, in the request's transaction, so the
# configuration is exactly what a read of its own there would have returned.
_DEVICE_AND_RECORDING = (
    select(
        devices.c.public_key.label("device_public_key"),
        devices.c.revoked_at,
        devices.c.user_id.label("device_user_id"),
        *recordings.c,
        *(column.label(f"storage_{column.name}") for column in storage_configs.c),
    )
    .select_from(
        devices.outerjoin(recordings, and_(
            recordings.c.tenant_id == devices.c.tenant_id,
            recordings.c.id == bindparam("recording"),
            recordings.c.device_id == devices.c.id,
        )).outerjoin(storage_configs, storage_configs.c.tenant_id == devices.c.tenant_id)
    )
    .where(devices.c.tenant_id == bindparam("tenant"), devices.c.id == bindparam("device"))
)


def _with_segments(on: Any) -> Any:
    """`_DEVICE_AND_RECORDING` and the recording's segments where `on` holds, outer-joined
    (their columns as `segment_<name>`, NULL when none): one read for a route that needs both."""
    return _DEVICE_AND_RECORDING.add_columns(
        *(column.label(f"segment_{column.name}") for column in _SEGMENT_ALIAS.c)
    ).outerjoin_from(recordings, _SEGMENT_ALIAS, and_(
        _SEGMENT_ALIAS.c.tenant_id == recordings.c.tenant_id,
        _SEGMENT_ALIAS.c.recording_id == recordings.c.id,
        on,
    ))


_SEGMENT_ALIAS = segments.alias("segment")
# What a completion reads: the device, the recording and its segment `seq`.
_DEVICE_RECORDING_SEGMENT = _with_segments(_SEGMENT_ALIAS.c.seq == bindparam("seq"))
# What a grant reads: the same with the recording's segments from `lowest` (the one below
# the granted seq) up, the first three in order: in the common case (segments declared in
# seq order) the one before, `seq` itself and the nearest above.
_DEVICE_RECORDING_AROUND = (
    _with_segments(_SEGMENT_ALIAS.c.seq >= bindparam("lowest"))
    .order_by(_SEGMENT_ALIAS.c.seq)
    .limit(3)
)


def _segment_of(row: Row[Any]) -> Any:
    """The segment columns of a `_with_segments` row, with a segment row's attributes."""
    fields = row._mapping
    return SimpleNamespace(**{c.name: fields[f"segment_{c.name}"] for c in segments.c})


def storage_row_of(row: Row[Any]) -> storage_config.ConfigRow | None:
    """The tenant's storage configuration row read with the device (`_DEVICE_AND_RECORDING`),
    as `storage.config.resolve` takes it; None when the tenant has none."""
    fields = row._mapping
    if fields["storage_tenant_id"] is None:
        return None
    return storage_config.ConfigRow(
        tuple(fields[f"storage_{c.name}"] for c in storage_configs.c)
    )


async def _device_recording_rows(
    scope: TenantScope, principal: Principal, statement: Any, params: dict[str, Any]
) -> list[Row[Any]]:
    """`enrolled_device` and `own_recording` in one read (the device path's routes check
    the device themselves: `Route.checks_device`): 401 unless the calling device is
    enrolled, 404 unless it made the recording. Each row has the recording's columns, the
    device's custody key as `device_public_key`, and `_with_segments`' segment columns."""
    rows = list((await scope.execute(statement, {
        "tenant": scope.tenant_id, "device": principal.subject, **params,
    })).all())
    check_enrolled(principal, rows[0] if rows else None, device_user="device_user_id")
    if rows[0].id is None:
        raise NotFound("no such recording")
    return rows


async def device_recording_segment(
    scope: TenantScope, principal: Principal, recording_id: str, seq: int
) -> tuple[Row[Any], Any]:
    """The recording's row (`_device_recording_rows`, `storage_row_of` gives the tenant's
    storage row from it) and its segment `seq` (with a segment row's attributes), in one
    read; 404 when the segment was never declared."""
    row, = await _device_recording_rows(
        scope, principal, _DEVICE_RECORDING_SEGMENT, {"recording": recording_id, "seq": seq}
    )
    if row.segment_id is None:
        raise NotFound(f"segment {seq} was never declared: ask for an upload grant first")
    return row, _segment_of(row)


# PostgreSQL: what a completion reads, as one call in a transaction of its own (0018).
_COMPLETION_READ = text(
    "SELECT * FROM bucketreel_completion_read(:tenant, :device, :recording, :seq)"
)


def _fields(whole_row: Any) -> dict[str, Any] | None:
    """A table's whole row as the call returns it (asyncpg: a record), by column name; None
    for the NULL row of an outer join."""
    if whole_row is None:
        return None
    fields = dict(whole_row.items())
    return None if all(value is None for value in fields.values()) else fields


async def completion_read(
    db: Database, principal: Principal, recording_id: str, seq: int
) -> tuple[Any, Any, storage_config.ConfigRow | None]:
    """PostgreSQL: `device_recording_segment` and the tenant's storage row
    (`storage_row_of`) in one call, its own transaction: the recording (with the device's
    custody key as `device_public_key`), its segment `seq`, the storage row (None: none).
    The same refusals: 401 unless the device is enrolled, 404 unless it made the recording
    and declared the segment."""
    row = await db.call(_COMPLETION_READ, {
        "tenant": principal.tenant_id, "device": principal.subject,
        "recording": recording_id, "seq": seq,
    })
    row = check_enrolled(principal, row, device_user="device_user_id")
    recording = _fields(row.recording)
    if recording is None:
        raise NotFound("no such recording")
    segment = _fields(row.segment)
    if segment is None:
        raise NotFound(f"segment {seq} was never declared: ask for an upload grant first")
    storage = _fields(row.storage)
    stored = None if storage is None else storage_config.ConfigRow(
        tuple(storage[column.name] for column in storage_configs.c)
    )
    return (
        SimpleNamespace(**recording, device_public_key=row.device_public_key),
        SimpleNamespace(**segment),
        stored,
    )


async def device_recording_around(
    scope: TenantScope, principal: Principal, recording_id: str, seq: int
) -> tuple[Row[Any], dict[int, Any]]:
    """The recording's row (`_device_recording_rows`, `storage_row_of` gives the tenant's
    storage row from it) and, by seq, its first three segments from `seq - 1` up (with a
    segment row's attributes), in one read."""
    rows = await _device_recording_rows(
        scope, principal, _DEVICE_RECORDING_AROUND, {"recording": recording_id, "lowest": seq - 1}
    )
    around = {r.segment_seq: _segment_of(r) for r in rows if r.segment_id is not None}
    return rows[0], around


async def own_recording(scope: TenantScope, principal: Principal, recording_id: str) -> Row[Any]:
    """The recording, if the calling device made it; otherwise it does not exist for them."""
    recording = (await scope.execute(
        _RECORDING, {"tenant": scope.tenant_id, "recording": recording_id}
    )).first()
    if recording is None or recording.device_id != principal.subject:
        raise NotFound("no such recording")
    return recording


async def find_segment(scope: TenantScope, recording_id: str, seq: int) -> Row[Any] | None:
    return (await scope.execute(
        _SEGMENT, {"tenant": scope.tenant_id, "recording": recording_id, "seq": seq}
    )).first()


async def segment_row(scope: TenantScope, recording_id: str, seq: int) -> Row[Any]:
    segment = await find_segment(scope, recording_id, seq)
    if segment is None:
        raise NotFound(f"segment {seq} was never declared: ask for an upload grant first")
    return segment


async def recording_info(scope: TenantScope, recording_id: str) -> RecordingInfo:
    recording = await scope.one(recordings, recordings.c.id == recording_id)
    if recording is None:
        raise NotFound("no such recording")
    grant_counts: dict[str, int] = dict(
        (
            await scope.execute(
                select(upload_grants.c.segment_id, func.count())
                .where(upload_grants.c.tenant_id == scope.tenant_id)
                .join(segments, segments.c.id == upload_grants.c.segment_id)
                .where(segments.c.recording_id == recording_id)
                .group_by(upload_grants.c.segment_id)
            )
        ).all()
    )
    rows = await scope.all(
        segments, segments.c.recording_id == recording_id, order_by=[segments.c.seq]
    )
    return RecordingInfo(
        recording_id=recording.id,
        user_id=recording.user_id,
        device_id=recording.device_id,
        state=recording.state,
        started_at=format_timestamp(recording.started_at),
        finished_at=format_timestamp(recording.finished_at) if recording.finished_at else None,
        segments=[
            SegmentInfo(
                seq=r.seq,
                key=r.object_key,
                state=r.state,
                size=r.size,
                sha256=r.sha256,
                started_at=format_timestamp(r.started_at),
                duration_ms=r.duration_ms,
                grants=int(grant_counts.get(r.id, 0)),
                record_hash=r.record_hash,
                codec=r.codec,
            )
            for r in rows
        ],
        gaps=[
            GapInfo(
                seqs=[int(x) for x in json.loads(g.seqs)],
                reason=g.reason,
                reported_at=format_timestamp(g.reported_at),
                from_=format_timestamp(g.gap_from) if g.gap_from is not None else None,
                to=format_timestamp(g.gap_to) if g.gap_to is not None else None,
            )
            for g in await scope.all(
                recording_gaps,
                recording_gaps.c.recording_id == recording_id,
                order_by=[recording_gaps.c.reported_at],
            )
        ],
    )
