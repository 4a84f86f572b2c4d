"""Health and the API description."""

from __future__ import annotations

from aiohttp import web

from broker.errors import BrokerError
from broker.web.appkeys import OPENAPI, SERVICES
from broker.web.http import reply
from shared.api import Health


async def healthz(request: web.Request) -> web.Response:
    try:
        await request.app[SERVICES].db.ping()
    except Exception as exc:  # a health probe reports, it does not raise
        raise BrokerError(f"database unreachable: {type(exc).__name__}") from None
    return reply(Health(status="ok"))


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])
