"""HTTP handlers for device enrollment and token refresh: parse, call the service, reply."""

from __future__ import annotations

from aiohttp import web

from broker.web.appkeys import SERVICES
from broker.web.http import reply
from shared.wire import EnrollRequest, RefreshRequest


async def enroll(request: web.Request, body: EnrollRequest) -> web.Response:
    pair = await request.app[SERVICES].devices.enroll(body.code, body.name, body.public_key)
    return reply(pair, status=201)


async def refresh(request: web.Request, body: RefreshRequest) -> web.Response:
    pair = await request.app[SERVICES].devices.refresh(body.refresh_token)
    return reply(pair)
