"""HTTP handlers for a tenant's admins: manager assignments and devices."""

from __future__ import annotations

from aiohttp import web

from broker.identity import Principal
from broker.web.appkeys import SERVICES
from broker.web.http import reply, shape
from shared.api import Assignment, DeviceRevoked, Devices


async def assign(request: web.Request, principal: Principal, body: Assignment) -> web.Response:
    created = await request.app[SERVICES].accounts.assign(
        principal.tenant_id, manager_id=body.manager_id, employee_id=body.employee_id,
        actor=f"user:{principal.user_id}",
    )
    return reply(body, status=201 if created else 200)


async def devices(request: web.Request, principal: Principal) -> web.Response:
    listed = await request.app[SERVICES].devices.list_devices(principal.tenant_id)
    return reply(shape(Devices, {"devices": listed}))


async def revoke_device(request: web.Request, principal: Principal) -> web.Response:
    device_id = request.match_info["device_id"]
    await request.app[SERVICES].devices.revoke(
        principal.tenant_id, device_id, actor=f"user:{principal.user_id}"
    )
    return reply(DeviceRevoked(device_id=device_id, state="revoked"))
