"""The route table: every route, who may call it, and what it takes and returns.

It is data, so the app, the OpenAPI document and the tests (which walk it) share one list:
a new route cannot be added without saying how it is authenticated.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web

from broker.auth import handlers as device_handlers
from broker.auth.guard import device_principal
from broker.auth.tokens import Principal
from broker.recordings import handlers as recording_handlers
from broker.web import meta

Auth = Literal["public", "device"]
PublicHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DeviceHandler = Callable[[web.Request, Principal], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    method: str
    path: str
    auth: Auth
    handler: PublicHandler | DeviceHandler
    summary: str
    request_schema: str | None = None
    responses: dict[int, str | None] = field(default_factory=dict)


RECORDING = "/api/v1/recordings/{recording_id}"
SEGMENT = RECORDING + "/segments/{seq}"

ROUTES: tuple[Route, ...] = (
    Route(
        method="GET",
        path="/healthz",
        auth="public",
        handler=meta.healthz,
        summary="Liveness and database check",
        responses={200: "Health"},
    ),
    Route(
        method="GET",
        path="/api/openapi.json",
        auth="public",
        handler=meta.openapi,
        summary="This API as OpenAPI 3.1",
        responses={200: None},
    ),
    Route(
        method="POST",
        path="/api/v1/devices/enroll",
        auth="public",
        handler=device_handlers.enroll,
        summary="Trade a one-time enrollment code for a device credential",
        request_schema="EnrollRequest",
        responses={201: "TokenPair"},
    ),
    Route(
        method="POST",
        path="/api/v1/devices/token",
        auth="public",
        handler=device_handlers.refresh,
        summary="Rotate a device refresh token",
        request_schema="RefreshRequest",
        responses={200: "TokenPair"},
    ),
    Route(
        method="POST",
        path="/api/v1/recordings",
        auth="device",
        handler=recording_handlers.start,
        summary="Start a recording",
        request_schema="StartRecording",
        responses={201: "RecordingCreated"},
    ),
    Route(
        method="GET",
        path=RECORDING,
        auth="device",
        handler=recording_handlers.get,
        summary="A recording's metadata and segments",
        responses={200: "RecordingInfo"},
    ),
    Route(
        method="POST",
        path=RECORDING + "/finish",
        auth="device",
        handler=recording_handlers.finish,
        summary="Mark a recording finished",
        responses={200: "RecordingInfo"},
    ),
    Route(
        method="POST",
        path=SEGMENT + "/upload",
        auth="device",
        handler=recording_handlers.upload,
        summary="Declare a segment and get a single-use presigned PUT for it",
        request_schema="UploadRequest",
        responses={200: "UploadGrant"},
    ),
    Route(
        method="POST",
        path=SEGMENT + "/complete",
        auth="device",
        handler=recording_handlers.complete,
        summary="Have the broker verify the uploaded object (HeadObject)",
        responses={200: "SegmentState"},
    ),
)


def _bind(route: Route) -> PublicHandler:
    if route.auth == "public":
        public: PublicHandler = route.handler  # type: ignore[assignment]
        return public
    device: DeviceHandler = route.handler  # type: ignore[assignment]

    async def handler(request: web.Request) -> web.StreamResponse:
        return await device(request, await device_principal(request))

    return handler


def install(app: web.Application) -> None:
    for route in ROUTES:
        app.router.add_route(route.method, route.path, _bind(route))
