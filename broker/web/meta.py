"""Health (readiness and liveness) and the API description.

`GET /healthz` is **readiness**, what a load balancer's health check asks: 200 only while
this replica should get traffic (the database answers, its schema is not behind the
migrations this code ships, and the replica is not draining after SIGTERM); 503 otherwise.
`GET /livez` is **liveness**, what a process supervisor asks: 200 while the process answers
at all, whatever the database does (restarting every replica because the database is down
would not bring it back).
"""

from __future__ import annotations

from aiohttp import web

from broker.errors import ServiceUnavailable
from broker.web.appkeys import DRAIN, OPENAPI, SERVICES
from broker.web.http import reply
from shared.api import Health


async def healthz(request: web.Request) -> web.Response:
    if request.app[DRAIN].draining:
        raise ServiceUnavailable(
            "this replica is draining (shutting down): send requests to another", retry_after=1
        )
    if problem := await request.app[SERVICES].db.unready():
        raise ServiceUnavailable(problem)
    return reply(Health(status="ok"))


async def livez(_request: web.Request) -> web.Response:
    return reply(Health(status="ok"))


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])
