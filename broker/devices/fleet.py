"""The admin's view of the tenant's fleet: each device with its person, what its agent last
reported (state, version, spool backlog, capture), its latest verified upload and the latest
gaps reported in its recordings; and the devices gone silent (the start page's glance).

Three queries however many devices: the devices with their people, then the latest verified
segment and the latest gaps per device, both looked for in each device's `RECENT_RECORDINGS`
newest recordings (window functions, on SQLite and PostgreSQL alike): the segments table is
the largest, and a device's latest upload is in its newest recordings. A device whose newest
recordings hold no verified segment shows no last upload, even when older ones do.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Subquery, func, select

from broker.db.schema import devices, recording_gaps, recordings, segments, users
from broker.db.scope import TenantScope
from broker.devices import heartbeat
from shared.wire import format_timestamp

RECENT_RECORDINGS = 5
RECENT_GAPS = 3
VERIFIED = "verified"  # broker.recordings' segment state (a layer above this one)

# What an agent reports (agent.recorder) → the device's state and why it is paused.
_REPORTED: dict[str, tuple[str, str | None]] = {
    "recording": ("recording", None),
    "paused_idle": ("paused", "idle"),
    "paused_locked": ("paused", "locked"),
    "capture_blocked": ("paused", "capture_blocked"),
    "starting": ("starting", None),
    "stopping": ("stopped", None),
    "stopped": ("stopped", None),
    "exited": ("stopped", None),
}


def state_of(row: Row[Any], now: datetime) -> tuple[str, str | None]:
    """revoked; silent (not heard from for three of its intervals); else what its agent
    last reported (enrolled: nothing yet), with the reason of a pause."""
    if row.revoked_at is not None:
        return "revoked", None
    if heartbeat.is_silent(row, now):
        return "silent", None
    status = heartbeat.last_status(row)
    if status is None:
        return "enrolled", None
    return _REPORTED.get(str(status.get("state")), ("unknown", None))


async def _devices(scope: TenantScope) -> list[Row[Any]]:
    person = (users.c.id == devices.c.user_id) & (users.c.tenant_id == devices.c.tenant_id)
    query = (
        select(devices, users.c.email)
        .join(users, person)
        .where(devices.c.tenant_id == scope.tenant_id)
        .order_by(devices.c.created_at, devices.c.id)
    )
    return list((await scope.execute(query)).all())


def _recent_recordings(scope: TenantScope) -> Subquery:
    """Each device's newest recordings (id, device_id)."""
    ranked = (
        select(
            recordings.c.id,
            recordings.c.device_id,
            func.row_number()
            .over(partition_by=recordings.c.device_id, order_by=recordings.c.started_at.desc())
            .label("rank"),
        )
        .where(recordings.c.tenant_id == scope.tenant_id, recordings.c.device_id.is_not(None))
        .subquery()
    )
    return (
        select(ranked.c.id, ranked.c.device_id)
        .where(ranked.c.rank <= RECENT_RECORDINGS)
        .subquery()
    )


async def _last_uploads(scope: TenantScope) -> dict[str, dict[str, Any]]:
    recent = _recent_recordings(scope)
    ranked = (
        select(
            recent.c.device_id,
            segments.c.recording_id,
            segments.c.seq,
            segments.c.size,
            segments.c.verified_at,
            func.row_number()
            .over(
                partition_by=recent.c.device_id,
                order_by=(segments.c.verified_at.desc(), segments.c.seq.desc()),
            )
            .label("rank"),
        )
        .join(recent, recent.c.id == segments.c.recording_id)
        .where(segments.c.tenant_id == scope.tenant_id, segments.c.state == VERIFIED)
        .subquery()
    )
    rows = (await scope.execute(select(ranked).where(ranked.c.rank == 1))).all()
    return {
        r.device_id: {
            "at": format_timestamp(r.verified_at),
            "recording_id": r.recording_id,
            "seq": r.seq,
            "size": r.size,
        }
        for r in rows
        if r.verified_at is not None
    }


async def _recent_gaps(scope: TenantScope) -> dict[str, list[dict[str, Any]]]:
    recent = _recent_recordings(scope)
    ranked = (
        select(
            recent.c.device_id,
            recording_gaps,
            func.row_number()
            .over(
                partition_by=recent.c.device_id,
                order_by=(recording_gaps.c.reported_at.desc(), recording_gaps.c.id),
            )
            .label("rank"),
        )
        .join(recent, recent.c.id == recording_gaps.c.recording_id)
        .where(recording_gaps.c.tenant_id == scope.tenant_id)
        .subquery()
    )
    query = select(ranked).where(ranked.c.rank <= RECENT_GAPS).order_by(
        ranked.c.device_id, ranked.c.rank
    )
    found: dict[str, list[dict[str, Any]]] = {}
    for r in (await scope.execute(query)).all():
        found.setdefault(r.device_id, []).append({
            "recording_id": r.recording_id,
            "reason": r.reason,
            "reported_at": format_timestamp(r.reported_at),
            "segments": len(json.loads(r.seqs)),
            "from": format_timestamp(r.gap_from) if r.gap_from else None,
            "to": format_timestamp(r.gap_to) if r.gap_to else None,
        })
    return found


def _reported(row: Row[Any]) -> dict[str, Any]:
    """The agent's own figures from its last heartbeat."""
    status = heartbeat.last_status(row) or {}
    version = status.get("agent_version")
    return {
        "agent_version": version if isinstance(version, str) else None,
        "spool_segments": int(status.get("spool_segments") or 0),
        "spool_bytes": int(status.get("spool_bytes") or 0),
    }


async def listing(scope: TenantScope, now: datetime) -> list[dict[str, Any]]:
    """Every device of the tenant, oldest first (`shared.api.DeviceInfo`)."""
    rows = await _devices(scope)
    uploads = await _last_uploads(scope)
    gaps = await _recent_gaps(scope)
    listed = []
    for r in rows:
        state, paused_reason = state_of(r, now)
        listed.append({
            "device_id": r.id,
            "user_id": r.user_id,
            "email": r.email,
            "name": r.name,
            "created_at": format_timestamp(r.created_at),
            "revoked_at": format_timestamp(r.revoked_at) if r.revoked_at else None,
            **heartbeat.status_fields(r, now),
            "state": state,
            "paused_reason": paused_reason,
            **_reported(r),
            "last_upload": uploads.get(r.id),
            "recent_gaps": gaps.get(r.id, []),
        })
    return listed


async def silent(scope: TenantScope, now: datetime) -> list[dict[str, Any]]:
    """The devices not revoked that went silent: id, name, person, last heard from."""
    return [
        {
            "device_id": r.id,
            "name": r.name,
            "email": r.email,
            "last_seen_at": r.last_seen_at,
        }
        for r in await _devices(scope)
        if heartbeat.is_silent(r, now)
    ]
