"""HTTP handlers for people: login (two steps), token refresh (bearer and browser), logout,
sign out everywhere, and enrolling this person's own workstation. Parse, call the service,
reply."""

from __future__ import annotations

from datetime import timedelta

import msgspec
from aiohttp import web

from broker.errors import Forbidden, Unauthenticated
from broker.identity import Principal
from broker.web import cookies
from broker.web.appkeys import SERVICES
from broker.web.http import client_address, reply, shape
from shared.api import (
    FailedSignIns,
    LoginRequest,
    MfaRequest,
    RegisterDevice,
    Session,
    SessionRefreshed,
    SignedOut,
)
from shared.api import LoginStep as ShapedLoginStep
from shared.errors import ErrorCode
from shared.wire import MAX_TOKEN, RefreshRequest, format_timestamp


async def login(request: web.Request, body: LoginRequest) -> web.Response:
    step = await request.app[SERVICES].login.login(
        body.tenant, body.email, body.password, client_address(request),
        known_device=cookies.known_device_cookie(request),
    )
    return reply(shape(ShapedLoginStep, step.to_json()))


async def mfa(request: web.Request, body: MfaRequest) -> web.Response:
    if body.cookie and not cookies.signin_token_ok(request):
        # A browser session only for the browser that opened the sign-in page: a cross-site
        # page cannot read that page's token, so it cannot sign a victim into its account.
        raise Forbidden(
            "a browser sign-in (cookie: true) needs the sign-in page's token in X-CSRF-Token",
            code=ErrorCode.CSRF_FAILED,
        )
    result = await request.app[SERVICES].login.mfa(
        body.challenge, body.code, client_address(request), browser=body.cookie,
        known_device=cookies.known_device_cookie(request),
    )
    tokens = result.tokens
    if body.cookie:  # the browser keeps the token where scripts cannot read it
        session = Session(csrf_token=tokens.csrf_token, expires_in=tokens.expires_in)
    else:
        session = shape(Session, tokens.to_json())
    if result.recovery_codes:
        session = msgspec.structs.replace(session, recovery_codes=list(result.recovery_codes))
    if result.failed_sign_ins is not None:  # the person sees that someone tried
        session = msgspec.structs.replace(
            session, failed_sign_ins=shape(FailedSignIns, result.failed_sign_ins.to_json())
        )
    response = reply(session)
    settings = request.app[SERVICES].settings
    if body.cookie:
        cookies.set_session(response, request, settings, tokens)
    cookies.set_known_device(response, request, settings, result.known_device)
    return response


async def refresh(request: web.Request, body: RefreshRequest) -> web.Response:
    tokens = await request.app[SERVICES].sessions.refresh(body.refresh_token)
    return reply(shape(Session, tokens.to_json()))


async def refresh_browser(request: web.Request) -> web.Response:
    """A signed-in page keeps its session: the refresh cookie (sent only to this route) and the
    session's CSRF token → new access, CSRF and refresh cookies. No body is read."""
    token = cookies.refresh_cookie(request)
    if token is None or len(token) > MAX_TOKEN:
        raise Unauthenticated("no browser session to refresh; sign in again")
    tokens = await request.app[SERVICES].sessions.refresh_browser(
        token, cookies.csrf_header(request)
    )
    expires_at = request.app[SERVICES].clock() + timedelta(seconds=tokens.expires_in)
    response = reply(SessionRefreshed(
        expires_in=tokens.expires_in,
        expires_at=format_timestamp(expires_at),
        csrf_token=tokens.csrf_token,
    ))
    cookies.set_session(response, request, request.app[SERVICES].settings, tokens)
    return response


async def logout(request: web.Request, principal: Principal) -> web.Response:
    await request.app[SERVICES].sessions.logout(principal)
    response = reply(SignedOut(status="signed_out"))
    cookies.clear_session(response)
    return response


async def sign_out_everywhere(request: web.Request, principal: Principal) -> web.Response:
    await request.app[SERVICES].sessions.sign_out_everywhere(principal)
    response = reply(SignedOut(status="signed_out"))
    cookies.clear_session(response)
    return response


async def register_device(
    request: web.Request, principal: Principal, body: RegisterDevice
) -> web.Response:
    """A signed-in person enrolls their own workstation (`bucketreel-agent enroll --email`)."""
    services = request.app[SERVICES]
    # Registrations by login spend the person's and the tenant's budgets (devices.ratelimit).
    await services.device_limits.check_registration(
        principal, call="POST /api/v1/devices/register"
    )
    pair = await services.devices.enroll_user(principal, body.name, body.public_key)
    return reply(pair, status=201)
