"""HTTP handlers for device heartbeats and, for admins, the tenant's recording policy."""

from __future__ import annotations

from aiohttp import web

from broker.db.scope import TenantScope
from broker.devices import heartbeat, policy
from broker.identity import Principal
from broker.web.appkeys import SERVICES
from broker.web.http import read_json, reply
from shared.wire import Heartbeat, PolicyUpdate


async def beat(request: web.Request, principal: Principal) -> web.Response:
    body = Heartbeat.from_json(await read_json(request))
    services = request.app[SERVICES]
    return reply(await heartbeat.record(services.db, services.clock, principal, body))


async def get_policy(request: web.Request, principal: Principal) -> web.Response:
    async with request.app[SERVICES].db.transaction() as conn:
        return reply(await policy.describe(TenantScope(conn, principal.tenant_id)))


async def put_policy(request: web.Request, principal: Principal) -> web.Response:
    change = PolicyUpdate.from_json(await read_json(request))  # 400 before anything changes
    async for txn in request.app[SERVICES].db.attempts():
        async with txn as conn:
            updated = await policy.update(
                TenantScope(conn, principal.tenant_id), change,
                now=request.app[SERVICES].clock(), actor=f"user:{principal.user_id}",
            )
    return reply(updated)
