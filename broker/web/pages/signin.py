"""Sign-in (password, then TOTP; enrollment on the first sign-in) and sign-out pages.

Before there is a session, the forms are protected by a double-submit token: a random value
in an HttpOnly, SameSite=Strict cookie that must come back in the form. After sign-in, the
session cookies (access, CSRF and the refresh cookie) are set exactly as the API's
`cookie: true` login sets them.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

import segno
from aiohttp import web
from markupsafe import Markup

from broker.auth.login import LoginStep
from broker.errors import BrokerError, Forbidden, InvalidInput, RateLimited
from broker.identity import Principal
from broker.web import cookies
from broker.web.appkeys import SERVICES
from broker.web.http import client_address, reply
from broker.web.pages.forms import read_form
from broker.web.pages.html import page, wants_html
from shared.api import MAX_EMAIL, MAX_PASSWORD, MAX_TENANT, SignedOut

SIGNIN_COOKIE = cookies.SIGNIN_COOKIE
QR_SCALE = 5  # pixels per module

Form = dict[str, Any]  # what signin.html is filled with


def qr_svg(uri: str) -> Markup | None:
    """The QR code of the setup URI as inline SVG (made here: the secret goes nowhere else),
    at error correction M or, for a long URI, L; None when even a version-40 code at level L
    cannot hold it (the page then asks for the key to be typed in)."""
    for level in ("m", "l"):
        try:
            code = segno.make(uri, error=level, micro=False)
        except segno.DataOverflowError:
            continue
        svg = code.svg_inline(
            scale=QR_SCALE, svgclass="qr", lineclass=None, title="QR code of the setup URI"
        )
        return Markup(svg)  # noqa: S704 (segno's SVG: path data, our title, no input text)
    return None


def _fields(form: dict[str, str], *names: str) -> list[str]:
    values = []
    for name in names:
        value = form.get(name, "")
        if not value:
            raise InvalidInput(f"{name} is required")
        values.append(value)
    return values


async def _form(request: web.Request) -> dict[str, str]:
    """The posted form, after checking the double-submit token against the cookie."""
    form = await read_form(request)
    if not cookies.signin_token_ok(request, form.get("csrf_token", "")):
        raise Forbidden("the sign-in form expired; open the sign-in page again")
    return form


def form_token(request: web.Request) -> str:
    """The double-submit token of the forms before a session (sign-in, an invitation's)."""
    return request.cookies.get(SIGNIN_COOKIE) or secrets.token_urlsafe(32)



def set_form_token(response: web.Response, request: web.Request, token: str) -> None:
    """The token's cookie (`HttpOnly; SameSite=Strict`), which the form must send back."""
    response.set_cookie(
        SIGNIN_COOKIE, token, path="/", httponly=True, samesite="Strict", max_age=900,
        secure=cookies.secure_cookies(request, request.app[SERVICES].settings),
    )


def _signin_page(
    request: web.Request, token: str, form: Form, *, error: str = "", status: int = 200,
    notice: str = "",
) -> web.Response:
    response = page(
        request, "signin.html", title="Sign in", error=error, status=status, notice=notice,
        **form,
    )
    set_form_token(response, request, token)
    return response


def _password_form(token: str, tenant: str = "", email: str = "") -> Form:
    return {"csrf": token, "tenant": tenant, "email": email, "challenge": ""}


def _code_form(token: str, step: LoginStep, tenant: str, email: str) -> Form:
    enroll = None
    if step.provisioning_uri:
        query = parse_qs(urlsplit(step.provisioning_uri).query)
        enroll = {
            "qr": qr_svg(step.provisioning_uri),
            "secret": query.get("secret", [""])[0],
            "uri": step.provisioning_uri,
            "reset": step.mfa_reset,  # an admin reset it: the page says so
        }
    # what the person typed in the first step, so that after a wrong code the password form
    # comes back filled in (not secret: they typed it, and the page is theirs)
    return {
        "csrf": token, "challenge": step.challenge, "enroll": enroll,
        "tenant": tenant, "email": email,
    }


def _failed(request: web.Request, token: str, exc: BrokerError, form: Form) -> web.Response:
    response = _signin_page(request, token, form, error=exc.message, status=exc.status)
    if isinstance(exc, RateLimited):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


async def signin_page(request: web.Request) -> web.Response:
    """The password form; `?tenant=&email=` fill it in (the page after an invitation links
    here so)."""
    token = form_token(request)
    tenant = request.query.get("tenant", "")[:MAX_TENANT]
    email = request.query.get("email", "")[:MAX_EMAIL]
    notice = "You are signed out." if request.query.get("signed_out") == "1" else ""
    return _signin_page(request, token, _password_form(token, tenant, email), notice=notice)


async def signin(request: web.Request) -> web.Response:
    form = await _form(request)
    token = form_token(request)
    tenant, email = form.get("tenant", "")[:200], form.get("email", "")[:MAX_EMAIL]
    try:
        tenant_, email_, password = _fields(form, "tenant", "email", "password")
        if len(tenant_) > 200 or len(email_) > MAX_EMAIL or len(password) > MAX_PASSWORD:
            raise InvalidInput("a field is too long")
        step = await request.app[SERVICES].login.login(
            tenant_, email_, password, client_address(request),
            known_device=cookies.known_device_cookie(request),
        )
    except BrokerError as exc:
        return _failed(request, token, exc, _password_form(token, tenant, email))
    return _signin_page(request, token, _code_form(token, step, tenant_, email_))


async def signin_code(request: web.Request) -> web.Response:
    form = await _form(request)
    token = form_token(request)
    try:
        challenge, code = _fields(form, "challenge", "code")
        if len(challenge) > 200 or len(code) > 40:
            raise InvalidInput("a field is too long")
        result = await request.app[SERVICES].login.mfa(
            challenge, code, client_address(request), browser=True,
            known_device=cookies.known_device_cookie(request),
        )
    except BrokerError as exc:
        # Start again from the password (a challenge is short-lived and single-use), with the
        # organisation and email the code form carried back.
        tenant = form.get("tenant", "")[:200]
        email = form.get("email", "")[:MAX_EMAIL]
        return _failed(request, token, exc, _password_form(token, tenant, email))
    failed = result.failed_sign_ins
    if result.recovery_codes:
        response = page(
            request, "recovery.html", title="Recovery codes", codes=result.recovery_codes
        )
    elif failed is not None:  # the person sees that someone tried, before going on
        response = page(
            request, "failed_sign_ins.html", title="Failed sign-in attempts",
            count=failed.count,
            last=failed.last_at.strftime("%Y-%m-%d %H:%M UTC") if failed.last_at else "-",
        )
    else:
        response = see_other("/")
    settings = request.app[SERVICES].settings
    cookies.set_session(response, request, settings, result.tokens)
    cookies.set_known_device(response, request, settings, result.known_device)
    response.del_cookie(SIGNIN_COOKIE, path="/")
    return response


async def logout(request: web.Request, principal: Principal) -> web.StreamResponse:
    """The sign-out form (its CSRF token checked by the route's guard)."""
    await request.app[SERVICES].sessions.logout(principal)
    signed_out = SignedOut(status="signed_out")
    response = see_other("/signin?signed_out=1") if wants_html(request) else reply(signed_out)
    cookies.clear_session(response)
    return response
