"""HTTP handlers for people: login (two steps), token refresh (bearer and browser), logout,
sign out everywhere, and enrolling this person's own workstation. Parse, call the service,
reply."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp import web

from broker.errors import Unauthenticated
from broker.identity import Principal
from broker.web import cookies
from broker.web.appkeys import SERVICES
from broker.web.http import (
    MAX_EMAIL,
    MAX_PASSWORD,
    client_address,
    json_object,
    read_json,
    reply,
    text_field,
)
from shared.wire import MAX_DEVICE_NAME, WireError, format_timestamp, optional_public_key


async def login(request: web.Request) -> web.Response:
    body = json_object(await read_json(request))
    step = await request.app[SERVICES].login.login(
        text_field(body, "tenant", 200),
        text_field(body, "email", MAX_EMAIL),
        text_field(body, "password", MAX_PASSWORD),
        client_address(request),
        known_device=cookies.known_device_cookie(request),
    )
    return reply(step.to_json())


async def mfa(request: web.Request) -> web.Response:
    body = json_object(await read_json(request))
    use_cookie = body.get("cookie", False)
    if not isinstance(use_cookie, bool):
        raise WireError("cookie", "must be true or false")
    result = await request.app[SERVICES].login.mfa(
        text_field(body, "challenge", 200),
        text_field(body, "code", 40),
        client_address(request),
        browser=use_cookie,
        known_device=cookies.known_device_cookie(request),
    )
    tokens = result.tokens
    data: dict[str, Any]
    if use_cookie:  # the browser keeps the token where scripts cannot read it
        data = {"csrf_token": tokens.csrf_token, "expires_in": tokens.expires_in}
    else:
        data = tokens.to_json()
    if result.recovery_codes:
        data["recovery_codes"] = result.recovery_codes
    if result.failed_sign_ins is not None:  # the person sees that someone tried
        data["failed_sign_ins"] = result.failed_sign_ins.to_json()
    response = reply(data)
    if use_cookie:
        cookies.set_session(response, request, request.app[SERVICES].settings, tokens)
    cookies.set_known_device(
        response, request, request.app[SERVICES].settings, result.known_device
    )
    return response


async def refresh(request: web.Request) -> web.Response:
    body = json_object(await read_json(request))
    tokens = await request.app[SERVICES].sessions.refresh(text_field(body, "refresh_token", 200))
    return reply(tokens.to_json())


async def refresh_browser(request: web.Request) -> web.Response:
    """A signed-in page keeps its session: the refresh cookie (sent only to this route) and the
    session's CSRF token → new access, CSRF and refresh cookies. No body is read."""
    token = cookies.refresh_cookie(request)
    if token is None or len(token) > 200:
        raise Unauthenticated("no browser session to refresh; sign in again")
    tokens = await request.app[SERVICES].sessions.refresh_browser(
        token, cookies.csrf_header(request)
    )
    expires_at = request.app[SERVICES].clock() + timedelta(seconds=tokens.expires_in)
    response = reply({
        "expires_in": tokens.expires_in,
        "expires_at": format_timestamp(expires_at),
        "csrf_token": tokens.csrf_token,
    })
    cookies.set_session(response, request, request.app[SERVICES].settings, tokens)
    return response


async def logout(request: web.Request, principal: Principal) -> web.Response:
    await request.app[SERVICES].sessions.logout(principal)
    response = reply({"status": "signed_out"})
    cookies.clear_session(response)
    return response


async def sign_out_everywhere(request: web.Request, principal: Principal) -> web.Response:
    await request.app[SERVICES].sessions.sign_out_everywhere(principal)
    response = reply({"status": "signed_out"})
    cookies.clear_session(response)
    return response


async def register_device(request: web.Request, principal: Principal) -> web.Response:
    """A signed-in person enrolls their own workstation (`bucketreel-agent enroll --email`)."""
    body = json_object(await read_json(request))
    services = request.app[SERVICES]
    # Registrations by login spend the person's and the tenant's budgets (devices.ratelimit).
    await services.device_limits.check_registration(
        principal, call="POST /api/v1/devices/register"
    )
    pair = await services.devices.enroll_user(
        principal, text_field(body, "name", MAX_DEVICE_NAME), optional_public_key(body)
    )
    return reply(pair.to_json(), status=201)
