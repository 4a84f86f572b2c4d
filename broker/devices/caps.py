"""How many devices a person may have: a cap on the devices not revoked, per person.

Why: every device has its own request budgets (`broker.devices.ratelimit`), so a person who
could register devices without end could multiply them (200 devices in 2 s, then thousands of
recordings and audit entries). The cap is the person's own (`users.device_cap`), else the
tenant's (`tenants.device_cap`), else `BUCKETREEL_DEVICE_CAP` (3: a desktop, a laptop and a
spare). An admin raises it on the person's page (`POST /api/v1/admin/people/{id}/device-cap`) or
with `bucketreel-broker admin set-device-cap`. Revoked devices do
not count. It holds for both ways in: a person's own login (`POST /api/v1/devices/register`)
and an admin's one-time enrollment code (a code names its person; a fleet install enrolls one
device per person, so the cap does not stand in its way; one person's code beyond the cap is
refused and stays unused, so it works once a device is revoked or the cap raised).

The count and the new row are one step: the person's row is locked first (`FOR UPDATE` on
PostgreSQL; SQLite's broker transactions are serialized already), so parallel registrations
cannot all pass one count.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from broker.db.schema import devices, tenants, users
from broker.db.scope import TenantScope
from broker.errors import Conflict, NotFound
from shared.errors import ErrorCode

DEFAULT_DEVICE_CAP = 3
MAX_DEVICE_CAP = 10_000


async def effective_cap(scope: TenantScope, user_id: str, default: int) -> int:
    user_cap = (
        await scope.execute(
            select(users.c.device_cap)
            .where(users.c.tenant_id == scope.tenant_id, users.c.id == user_id)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if user_cap is not None:
        return int(user_cap)
    tenant_cap = (
        await scope.execute(select(tenants.c.device_cap).where(tenants.c.id == scope.tenant_id))
    ).scalar_one_or_none()
    return default if tenant_cap is None else int(tenant_cap)


async def describe(scope: TenantScope, user_id: str, default: int) -> dict[str, Any]:
    """The person's own cap, the tenant's, the default, the one in force and their devices
    not revoked (`shared.api.DeviceCap`); 404 when the tenant has no such person."""
    own = (await scope.execute(
        select(users.c.id, users.c.device_cap)
        .where(users.c.tenant_id == scope.tenant_id, users.c.id == user_id)
    )).first()
    if own is None:
        raise NotFound("no such user in this tenant")
    tenant_cap = (
        await scope.execute(select(tenants.c.device_cap).where(tenants.c.id == scope.tenant_id))
    ).scalar_one_or_none()
    active = await scope.count(
        devices, devices.c.user_id == user_id, devices.c.revoked_at.is_(None)
    )
    effective = own.device_cap if own.device_cap is not None else (
        default if tenant_cap is None else tenant_cap
    )
    return {
        "user_id": user_id, "device_cap": own.device_cap, "tenant_device_cap": tenant_cap,
        "default": default, "effective": int(effective), "active_devices": active,
    }


async def require_room(scope: TenantScope, user_id: str, default: int) -> None:
    """Raise Conflict (409 `device_limit`) when the person has their cap of active devices."""
    cap = await effective_cap(scope, user_id, default)
    active = await scope.count(
        devices, devices.c.user_id == user_id, devices.c.revoked_at.is_(None)
    )
    if active >= cap:
        raise Conflict(
            f"this person has {active} active device(s), their cap is {cap}: revoke one, or "
            "ask an admin to raise the cap (on the person's page, or "
            "bucketreel-broker admin set-device-cap)",
            code=ErrorCode.DEVICE_LIMIT,
        )


async def set_cap(scope: TenantScope, *, user_id: str | None, cap: int | None) -> dict[str, Any]:
    """Set (or with None clear) the tenant's cap, or one person's; returns the new state."""
    if cap is not None and not 0 <= cap <= MAX_DEVICE_CAP:
        raise ValueError(f"a device cap is between 0 and {MAX_DEVICE_CAP}")
    if user_id is None:
        await scope.execute(
            tenants.update().where(tenants.c.id == scope.tenant_id).values(device_cap=cap)
        )
        return {"tenant_id": scope.tenant_id, "device_cap": cap}
    if not await scope.update(users, users.c.id == user_id, device_cap=cap):
        raise NotFound("no such user in this tenant")
    return {"tenant_id": scope.tenant_id, "user_id": user_id, "device_cap": cap}
