"""HTTP handlers for device heartbeats and, for admins, the tenant's recording policy."""

from __future__ import annotations

from aiohttp import web

from broker.devices import heartbeat
from broker.identity import Principal
from broker.web.appkeys import SERVICES
from broker.web.http import reply, shape
from shared.wire import Heartbeat, HeartbeatReceived, PolicyPatch, PolicySettings


async def beat(request: web.Request, principal: Principal, body: Heartbeat) -> web.Response:
    services = request.app[SERVICES]
    received = await heartbeat.record(services.db, services.clock, principal, body)
    return reply(shape(HeartbeatReceived, received))


async def get_policy(request: web.Request, principal: Principal) -> web.Response:
    described = await request.app[SERVICES].devices.describe_policy(principal.tenant_id)
    return reply(shape(PolicySettings, described))


async def put_policy(request: web.Request, principal: Principal, body: PolicyPatch) -> web.Response:
    updated = await request.app[SERVICES].devices.update_policy(
        principal.tenant_id, body.update(), actor=f"user:{principal.user_id}"
    )
    return reply(shape(PolicySettings, updated))
