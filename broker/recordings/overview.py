"""What people see now: who records, who paused, who went silent, how much was recorded
today (the start page), and what a person may know about their own recording (the
transparency page).

A device's state is the admin's device list's (`broker.devices.fleet.state_of`: its last
heartbeat, or silent when not heard from for three of its intervals); a person's is the most
telling of their devices' (recording before capture blocked before paused, …: a person is
"recording now" while any of their workstations records). Time recorded on a day is the sum
of the verified segments' time within the day (cut in the viewer's zone), clipped to it.
The reads authorize through `broker.access`, in the caller's transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import Row, and_, select

from broker import access
from broker.audit import query as audit_query
from broker.clock import day_bounds
from broker.db.schema import devices, manager_assignments, recordings, segments, users
from broker.db.scope import TenantScope
from broker.devices import fleet, heartbeat, policy
from broker.identity import Principal, Role
from broker.recordings import bounds
from shared.wire import format_timestamp

VERIFIED = "verified"
# A segment that started this long before the day began may still reach into it.
LONGEST_SEGMENT = timedelta(hours=1)
# The person's state from their devices', most telling first.
_RANK = ("recording", "capture_blocked", "paused", "starting", "silent", "stopped", "enrolled")


def _time(value: datetime | None) -> str | None:
    return format_timestamp(value) if value is not None else None


def device_now(row: Row[Any], now: datetime) -> dict[str, Any]:
    """A device as `shared.api.DeviceNow` shows it."""
    state, reason = fleet.state_of(row, now)
    capture = heartbeat.capture_of(row)
    blocked = reason == "capture_blocked" or (capture is not None and capture.state == "blocked")
    return {
        "device_id": row.id,
        "name": row.name,
        "state": state,
        "paused_reason": reason,
        "capture_blocked": blocked and state not in ("silent", "revoked"),
        "last_seen_at": _time(row.last_seen_at),
        "silent_since": _time(row.last_seen_at or row.created_at) if state == "silent" else None,
    }


def _rank(device: dict[str, Any]) -> str:
    if device["capture_blocked"]:
        return "capture_blocked"
    state = str(device["state"])
    return state if state in _RANK else "stopped"


def person_now(
    row: Row[Any], owned: Sequence[Row[Any]], seconds: float, now: datetime
) -> dict[str, Any]:
    """A person as `shared.api.PersonNow` shows them, from their devices not revoked."""
    listed = [device_now(d, now) for d in owned if d.revoked_at is None]
    state, reason, since = "no_device", None, None
    if listed:
        state = min((_rank(d) for d in listed), key=_RANK.index)
        if state == "paused":
            reason = next(d["paused_reason"] for d in listed if _rank(d) == "paused")
        if state == "silent":  # heard from by none since the latest of them was
            since = max(d["silent_since"] for d in listed if d["state"] == "silent")
    return {
        "user_id": row.id, "email": row.email, "display_name": row.display_name,
        "role": row.role, "state": state, "paused_reason": reason, "silent_since": since,
        "recorded_seconds": round(seconds, 1), "devices": listed,
    }


async def _devices_of(scope: TenantScope, ids: Sequence[str]) -> dict[str, list[Row[Any]]]:
    owned: dict[str, list[Row[Any]]] = defaultdict(list)
    if ids:
        for d in await scope.all(
            devices, devices.c.user_id.in_(ids), order_by=[devices.c.created_at, devices.c.id]
        ):
            owned[d.user_id].append(d)
    return owned


async def recorded_on(
    scope: TenantScope, ids: Sequence[str], day: date, zone: tzinfo
) -> dict[str, float]:
    """Seconds of verified segments within `day` (cut in `zone`), per person."""
    start, end = day_bounds(day, zone)
    if not ids:
        return {}
    query = (
        select(recordings.c.user_id, segments.c.started_at, segments.c.duration_ms)
        .join(recordings, and_(
            recordings.c.id == segments.c.recording_id,
            recordings.c.tenant_id == segments.c.tenant_id,
        ))
        .where(
            segments.c.tenant_id == scope.tenant_id, recordings.c.user_id.in_(ids),
            segments.c.state == VERIFIED, segments.c.started_at >= start - LONGEST_SEGMENT,
            segments.c.started_at < end,
        )
    )
    seconds: dict[str, float] = defaultdict(float)
    for r in (await scope.execute(query)).all():
        stop = bounds.segment_end(r.started_at, r.duration_ms)
        if stop is not None and stop > start:
            seconds[r.user_id] += (min(stop, end) - max(r.started_at, start)).total_seconds()
    return seconds


def _watched(row: Row[Any], owned: dict[str, list[Row[Any]]]) -> bool:
    """Whom a start page lists: employees, and anyone else who has had a workstation."""
    return bool(row.role == Role.EMPLOYEE or owned.get(row.id))


async def overview(
    scope: TenantScope, principal: Principal, now: datetime, zone: tzinfo
) -> dict[str, Any]:
    """The caller's own state and that of the people they may watch besides, with the time
    recorded today (`shared.api.Overview`)."""
    me = await access.require_visible(scope, principal, principal.user_id)
    others = [r for r in await access.visible_users(scope, principal) if r.id != me.id]
    ids = [me.id, *(r.id for r in others)]
    owned = await _devices_of(scope, ids)
    today = now.astimezone(zone).date()
    seconds = await recorded_on(scope, ids, today, zone)
    listed = sorted(
        (r for r in others if _watched(r, owned)),
        key=lambda r: ((r.display_name or r.email).casefold(), r.email),
    )
    return {
        "day": today.isoformat(),
        "zone": str(getattr(zone, "key", None) or zone.tzname(None) or "UTC"),
        "me": person_now(me, owned[me.id], seconds.get(me.id, 0.0), now),
        "people": [person_now(r, owned[r.id], seconds.get(r.id, 0.0), now) for r in listed],
    }


def _watcher(row: Row[Any]) -> dict[str, Any]:
    return {
        "user_id": row.id, "email": row.email, "display_name": row.display_name,
        "role": row.role,
    }


async def transparency(
    scope: TenantScope, principal: Principal, now: datetime, zone: tzinfo
) -> tuple[dict[str, Any], audit_query.Receipts]:
    """What the caller may know about their own recording (`shared.api.Transparency`, but
    for the viewings: the receipts, grouped, which the caller shapes)."""
    me = await access.require_visible(scope, principal, principal.user_id)
    await access.require_receipts(scope, principal, me.id)
    watching = select(manager_assignments.c.manager_id).where(
        manager_assignments.c.tenant_id == scope.tenant_id,
        manager_assignments.c.employee_id == me.id,
    )
    managers = await scope.all(
        users, users.c.id.in_(watching), users.c.role == Role.MANAGER, order_by=[users.c.email]
    )
    admins = await scope.all(
        users, users.c.role == Role.ADMIN, users.c.state == "active", order_by=[users.c.email]
    )
    owned = await _devices_of(scope, [me.id])
    today = now.astimezone(zone).date()
    seconds = await recorded_on(scope, [me.id], today, zone)
    own = person_now(me, owned[me.id], seconds.get(me.id, 0.0), now)
    own["devices"] = [device_now(d, now) for d in owned[me.id]]  # the revoked ones too
    described = await policy.describe(scope)
    return {
        "me": own,
        "managers": [_watcher(m) for m in managers],
        "admins": [_watcher(a) for a in admins],
        "policy": described,
        "timeline": f"/employees/{me.id}",
    }, await audit_query.receipts(scope, me.id)
