"""Device heartbeats: what each running agent last reported, and which devices went silent.

An agent reports its status every `interval` seconds (60 by default, and at start and stop).
The broker keeps the latest report on the device row. A device not heard from for more than
`SILENT_AFTER` of its own intervals (counted from enrollment when it never reported) shows as
`silent`: recording that stops without a word must not go unnoticed.

The latest report says too whether the agent's screen capture delivers pictures (`capture`:
ok, or blocked with a reason and since when); `capture_of` reads it for the admin's device
list and the manager's day view. An agent that exited has no capture state.

The reply carries the tenant's recording policy (`broker.devices.policy`): the keys an admin
set, which the agent applies from its next segment.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, bindparam, text, update

from broker.clock import Clock
from broker.db.database import Database
from broker.db.schema import UTCDateTime, devices
from broker.db.scope import TenantScope
from broker.devices import policy
from broker.errors import Unauthenticated
from broker.identity import Principal
from shared.errors import ErrorCode
from shared.wire import CaptureState, Heartbeat, WireError, format_timestamp

SILENT_AFTER = 3  # intervals
DEFAULT_INTERVAL = 60  # seconds, until a device has told its own
# The device's own row, while it is enrolled (the check the guard would make: the route's
# `checks_device`), built once; it returns the tenant's policy (one round trip in all).
_BEAT = (
    update(devices)
    .where(
        devices.c.tenant_id == bindparam("tenant"),
        devices.c.id == bindparam("device"),
        devices.c.user_id == bindparam("user"),
        devices.c.revoked_at.is_(None),
    )
    .values(
        last_seen_at=bindparam("seen"),
        last_status=bindparam("status"),
        heartbeat_interval=bindparam("every"),
    )
    .returning(*policy.returned())
)
# PostgreSQL: the same as one call, a transaction of its own (migration 0017).
_BEAT_CALL = text(
    "SELECT * FROM bucketreel_heartbeat(:tenant, :device, :user, :seen, :status, :every)"
).bindparams(bindparam("seen", type_=UTCDateTime()))


async def record(
    db: Database, clock: Clock, principal: Principal, beat: Heartbeat
) -> dict[str, Any]:
    """Store the calling device's heartbeat (its own row only: the id comes from its token,
    and a revoked device's token is refused here, in the one transaction); the reply carries
    its tenant's policy."""
    now = clock()
    params = {
        "tenant": principal.tenant_id, "device": principal.subject, "user": principal.user_id,
        "seen": now, "status": json.dumps(beat.to_json(), sort_keys=True),
        "every": beat.interval,
    }
    changed: Row[Any] | None
    if db.dialect == "postgresql":
        changed = await db.call(_BEAT_CALL, params)  # one round trip, its own transaction
    else:
        async for txn in db.attempts(tenant=principal.tenant_id):
            async with txn as conn:
                changed = (await TenantScope(conn, principal.tenant_id).execute(
                    _BEAT, params
                )).first()
    if changed is None:
        raise Unauthenticated("this device is not enrolled", code=ErrorCode.INVALID_TOKEN)
    pushed = policy.of_returned(changed)
    return {
        "received_at": format_timestamp(now),
        "interval": beat.interval,
        "policy": pushed.to_json(),
    }


def is_silent(row: Row[Any], now: datetime) -> bool:
    if row.revoked_at is not None:
        return False
    interval = row.heartbeat_interval or DEFAULT_INTERVAL
    since = row.last_seen_at or row.created_at
    return bool(now - since > timedelta(seconds=SILENT_AFTER * interval))


def last_status(row: Row[Any]) -> dict[str, Any] | None:
    """The device's last heartbeat as its agent sent it (None: it never sent one)."""
    try:
        status = json.loads(row.last_status) if row.last_status else None
    except ValueError:
        return None
    return status if isinstance(status, dict) else None


def capture_of(row: Row[Any]) -> CaptureState | None:
    """The capture state the device last reported (None: none, or the agent exited)."""
    status = last_status(row)
    if status is None or status.get("state") == "exited" or row.revoked_at:
        return None
    try:
        return CaptureState.from_json(status.get("capture"))
    except WireError:
        return None


def status_fields(row: Row[Any], now: datetime) -> dict[str, Any]:
    """The heartbeat part of a device listing."""
    capture = capture_of(row)
    return {
        "last_seen_at": format_timestamp(row.last_seen_at) if row.last_seen_at else None,
        "last_status": last_status(row),
        "silent": is_silent(row, now),
        "custody_key": row.public_key is not None,
        "capture": None if capture is None else capture.to_json(),
    }
