"""HTTP handler for device heartbeats."""

from __future__ import annotations

from aiohttp import web

from broker.auth.tokens import Principal
from broker.devices import heartbeat
from broker.web.appkeys import CLOCK, DATABASE
from broker.web.http import read_json, reply
from shared.wire import Heartbeat


async def beat(request: web.Request, principal: Principal) -> web.Response:
    body = Heartbeat.from_json(await read_json(request))
    return reply(await heartbeat.record(request.app[DATABASE], request.app[CLOCK], principal, body))
