"""The route table: every route, who may call it, and what it takes and returns.

It is data, so the app, the OpenAPI document and the tests (which walk it) share one list:
a new route cannot be added without saying how it is authenticated.

`auth` is "public", "device" (a device's bearer token), "user" (a person's bearer token or
session cookie) or "device_or_user". `roles` limits a user route to those roles (empty: every
role); what a person may then see is decided by `broker.recordings.access`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web

from broker.accounts import handlers as admin_handlers
from broker.auth import handlers as device_handlers
from broker.auth import user_handlers
from broker.auth.guard import device_or_user_principal, device_principal, user_principal
from broker.auth.tokens import Principal
from broker.errors import Forbidden
from broker.recordings import handlers as recording_handlers
from broker.web import meta

Auth = Literal["public", "device", "user", "device_or_user"]
ADMIN = frozenset({"admin"})
VIEWERS = frozenset({"manager", "admin"})
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
    roles: frozenset[str] = frozenset()


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
        auth="device_or_user",
        handler=recording_handlers.get,
        summary="A recording's metadata and segments (its device, or a person allowed to see it)",
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
    Route(
        method="POST",
        path="/api/v1/auth/login",
        auth="public",
        handler=user_handlers.login,
        summary="Login step one: password → a short-lived, single-use MFA challenge",
        request_schema="LoginRequest",
        responses={200: "LoginStep"},
    ),
    Route(
        method="POST",
        path="/api/v1/auth/mfa",
        auth="public",
        handler=user_handlers.mfa,
        summary="Login step two: challenge + TOTP or recovery code → session",
        request_schema="MfaRequest",
        responses={200: "Session"},
    ),
    Route(
        method="POST",
        path="/api/v1/auth/token",
        auth="public",
        handler=user_handlers.refresh,
        summary="Rotate a person's refresh token (reuse revokes the session)",
        request_schema="RefreshRequest",
        responses={200: "Session"},
    ),
    Route(
        method="POST",
        path="/api/v1/auth/logout",
        auth="user",
        handler=user_handlers.logout,
        summary="End this session",
        responses={200: "SignedOut"},
    ),
    Route(
        method="POST",
        path="/api/v1/auth/sign-out-everywhere",
        auth="user",
        handler=user_handlers.sign_out_everywhere,
        summary="End every session of this person",
        responses={200: "SignedOut"},
    ),
    Route(
        method="POST",
        path="/api/v1/devices/register",
        auth="user",
        handler=user_handlers.register_device,
        summary="Enroll the signed-in person's own workstation",
        request_schema="RegisterDevice",
        responses={201: "TokenPair"},
    ),
    Route(
        method="GET",
        path="/api/v1/employees",
        auth="user",
        handler=recording_handlers.employees,
        summary="The people whose recordings the caller may see",
        responses={200: "Employees"},
    ),
    Route(
        method="GET",
        path="/api/v1/employees/{user_id}/recordings",
        auth="user",
        handler=recording_handlers.employee_recordings,
        summary="An employee's recordings",
        responses={200: "Recordings"},
    ),
    Route(
        method="POST",
        path=SEGMENT + "/view",
        auth="user",
        roles=VIEWERS,
        handler=recording_handlers.view,
        summary="A short-lived presigned GET for one verified segment (audited)",
        responses={200: "ViewUrl"},
    ),
    Route(
        method="POST",
        path="/api/v1/admin/assignments",
        auth="user",
        roles=ADMIN,
        handler=admin_handlers.assign,
        summary="Let a manager see an employee's recordings",
        request_schema="Assignment",
        responses={200: "Assignment", 201: "Assignment"},
    ),
    Route(
        method="GET",
        path="/api/v1/admin/devices",
        auth="user",
        roles=ADMIN,
        handler=admin_handlers.devices,
        summary="The tenant's devices",
        responses={200: "Devices"},
    ),
    Route(
        method="POST",
        path="/api/v1/admin/devices/{device_id}/revoke",
        auth="user",
        roles=ADMIN,
        handler=admin_handlers.revoke_device,
        summary="Revoke a device: its tokens stop working at once",
        responses={200: "DeviceRevoked"},
    ),
)


_PRINCIPALS = {
    "device": device_principal,
    "user": user_principal,
    "device_or_user": device_or_user_principal,
}


def _bind(route: Route) -> PublicHandler:
    if route.auth == "public":
        public: PublicHandler = route.handler  # type: ignore[assignment]
        return public
    guarded: DeviceHandler = route.handler  # type: ignore[assignment]
    principal_of = _PRINCIPALS[route.auth]
    roles = route.roles

    async def handler(request: web.Request) -> web.StreamResponse:
        principal = await principal_of(request)
        if roles and principal.role not in roles:
            raise Forbidden(f"this needs one of the roles: {', '.join(sorted(roles))}")
        return await guarded(request, principal)

    return handler


def install(app: web.Application) -> None:
    for route in ROUTES:
        app.router.add_route(route.method, route.path, _bind(route))
