"""Who is calling: the token verified (algorithm pinned), then checked against the database.

Devices send `Authorization: Bearer`; people send it too, or (browsers) the HttpOnly session
cookie, in which case a state-changing request must also carry the session's CSRF token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from broker.errors import Forbidden, Unauthenticated
from broker.identity import Principal
from broker.web import cookies
from broker.web.appkeys import SERVICES
from shared.errors import ErrorCode


def bearer_token(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send `Authorization: Bearer <access token>`")
    return token.strip()


# Spends a verified device's request budget (`broker.devices.ratelimit`), or raises 429.
Spend = Callable[[Principal], Awaitable[None]]


async def device_principal(request: web.Request, spend: Spend | None = None) -> Principal:
    """The calling device; `spend` runs once the token is verified and before the database
    is asked about the device, so a device over its budget costs no query."""
    principal = await device_token_principal(request, spend)
    await request.app[SERVICES].devices.verify_device(principal)
    return principal


async def device_token_principal(
    request: web.Request, spend: Spend | None = None
) -> Principal:
    """The device its token names, budget spent, device row not read yet: for the routes
    whose service reads it in the request's own transaction (`Route.checks_device`)."""
    principal = request.app[SERVICES].signer.verify(bearer_token(request), "device")
    if spend is not None:
        await spend(principal)
    return principal


async def user_principal(request: web.Request, spend: Spend | None = None) -> Principal:
    """The calling person (`spend` is for devices only: people have no request budget)."""
    from_cookie = "Authorization" not in request.headers and cookies.access_cookie(request)
    token = from_cookie or bearer_token(request)
    principal = request.app[SERVICES].signer.verify(token, "user")
    sessions = request.app[SERVICES].sessions
    if (
        from_cookie
        and request.method not in cookies.SAFE_METHODS
        and not sessions.csrf_ok(principal.session_id, cookies.csrf_header(request))
    ):
        raise Forbidden(
            f"a request made with the session cookie needs the {cookies.CSRF_HEADER} header",
            code=ErrorCode.CSRF_FAILED,
        )
    await sessions.verify(principal)
    return principal


async def device_or_user_principal(
    request: web.Request, spend: Spend | None = None
) -> Principal:
    """A device or a person: the token's claimed audience picks which full verification runs."""
    if "Authorization" in request.headers:
        audience = request.app[SERVICES].signer.audience_of(bearer_token(request))
        if audience == "device":
            return await device_principal(request, spend)
    return await user_principal(request)
