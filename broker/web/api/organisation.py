"""HTTP handlers for the tenant's own settings (admins): its time zone."""

from __future__ import annotations

from aiohttp import web

from broker.identity import Principal
from broker.web.appkeys import SERVICES
from broker.web.http import reply, shape
from shared.api import Organisation, OrganisationChange


async def get_organisation(request: web.Request, principal: Principal) -> web.Response:
    described = await request.app[SERVICES].organisation.describe(principal.tenant_id)
    return reply(shape(Organisation, described))


async def put_organisation(
    request: web.Request, principal: Principal, body: OrganisationChange
) -> web.Response:
    changed = await request.app[SERVICES].organisation.set_time_zone(
        principal.tenant_id, body.time_zone, actor=f"user:{principal.user_id}"
    )
    return reply(shape(Organisation, changed))
