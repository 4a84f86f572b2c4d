"""Sign-in (password, then TOTP; enrollment on the first sign-in) and sign-out pages.

Before there is a session, the forms are protected by a double-submit token: a random value
in an HttpOnly, SameSite=Strict cookie that must come back in the form. After sign-in, the
session cookies (access, CSRF and the refresh cookie) are set exactly as the API's
`cookie: true` login sets them.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import parse_qs, urlsplit

from aiohttp import web

from broker.auth.login import LoginStep
from broker.auth.tokens import Principal
from broker.auth.user_handlers import MAX_EMAIL, MAX_PASSWORD, client_address
from broker.errors import BrokerError, Forbidden, InvalidInput, RateLimited
from broker.web import cookies
from broker.web.appkeys import LOGIN, SESSIONS, SETTINGS
from broker.web.http import reply
from broker.web.pages import qr
from broker.web.pages.html import Markup, join, page, render, wants_html

SIGNIN_COOKIE = "bucketreel_signin"

_FIRST_STEP_FORM = """
<form method="post" action="/signin" class="card">
<input type="hidden" name="csrf_token" value="{csrf}">
<label>Organisation
<input name="tenant" required autocomplete="organization" value="{tenant}"></label>
<label>Email
<input name="email" type="email" required autocomplete="username" value="{email}"></label>
<label>Password
<input name="password" type="password" required autocomplete="current-password"></label>
<button type="submit">Continue</button>
</form>"""

_CODE_FORM = """{enroll}
<form method="post" action="/signin/code" class="card">
<input type="hidden" name="csrf_token" value="{csrf}">
<input type="hidden" name="challenge" value="{challenge}">
<label>Code from your authenticator app (or a recovery code)
<input name="code" required autocomplete="one-time-code" inputmode="numeric" autofocus></label>
<button type="submit">Sign in</button>
</form>"""

_ENROLL = """<section class="card enroll">
<p>Two-factor authentication is required. Scan this code with an authenticator app
(or type the key in by hand), then enter the 6-digit code it shows.</p>
{qr}
<p>Key: <code class="secret">{secret}</code></p>
<details><summary>Setup URI</summary><code class="uri">{uri}</code></details>
</section>"""

_RECOVERY = """<p>Two-factor authentication is set up. Keep these recovery codes somewhere safe:
each signs you in once if you lose your authenticator. They are shown only now.</p>
<ol class="codes">{codes}</ol>
<p><a class="button" href="/">Continue</a></p>"""


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
    data = await request.post()
    form = {k: v for k, v in data.items() if isinstance(v, str)}
    expected = request.cookies.get(SIGNIN_COOKIE, "")
    if not expected or not hmac.compare_digest(expected, form.get("csrf_token", "")):
        raise Forbidden("the sign-in form expired; open the sign-in page again")
    return form


def _token(request: web.Request) -> str:
    return request.cookies.get(SIGNIN_COOKIE) or secrets.token_urlsafe(32)


def _signin_page(
    request: web.Request, token: str, body: Markup, *, error: str = "", status: int = 200
) -> web.Response:
    message = render('<p class="error" role="alert">{e}</p>', e=error) if error else Markup("")
    response = page("Sign in", join([message, body]), status=status)
    response.set_cookie(
        SIGNIN_COOKIE, token, path="/signin", httponly=True, samesite="Strict", max_age=900,
        secure=cookies.secure_cookies(request, request.app[SETTINGS]),
    )
    return response


def _password_form(token: str, tenant: str = "", email: str = "") -> Markup:
    return render(_FIRST_STEP_FORM, csrf=token, tenant=tenant, email=email)


def _code_form(token: str, step: LoginStep) -> Markup:
    enroll = Markup("")
    if step.provisioning_uri:
        query = parse_qs(urlsplit(step.provisioning_uri).query)
        enroll = render(_ENROLL, qr=qr.svg(step.provisioning_uri),
                        secret=query.get("secret", [""])[0], uri=step.provisioning_uri)
    return render(_CODE_FORM, csrf=token, enroll=enroll, challenge=step.challenge)


def _failed(
    request: web.Request, token: str, exc: BrokerError, body: Markup
) -> web.Response:
    response = _signin_page(request, token, body, error=exc.message, status=exc.status)
    if isinstance(exc, RateLimited):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


_FAILED_SIGN_INS = """<p class="warning" role="alert">Since your last sign-in there were
<strong>{count}</strong> failed attempt(s) to sign in to your account (wrong password or
code), the last at {last}. If that was not you, tell your administrator; your account's admins
see these attempts in the audit log.</p>
<p><a class="button" href="/">Continue</a></p>"""


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


async def signin_page(request: web.Request) -> web.Response:
    token = _token(request)
    return _signin_page(request, token, _password_form(token))


async def signin(request: web.Request) -> web.Response:
    form = await _form(request)
    token = _token(request)
    tenant, email = form.get("tenant", "")[:200], form.get("email", "")[:MAX_EMAIL]
    try:
        tenant_, email_, password = _fields(form, "tenant", "email", "password")
        if len(tenant_) > 200 or len(email_) > MAX_EMAIL or len(password) > MAX_PASSWORD:
            raise InvalidInput("a field is too long")
        step = await request.app[LOGIN].login(
            tenant_, email_, password, client_address(request),
            known_device=cookies.known_device_cookie(request),
        )
    except BrokerError as exc:
        return _failed(request, token, exc, _password_form(token, tenant, email))
    return _signin_page(request, token, _code_form(token, step))


async def signin_code(request: web.Request) -> web.Response:
    form = await _form(request)
    token = _token(request)
    try:
        challenge, code = _fields(form, "challenge", "code")
        if len(challenge) > 200 or len(code) > 40:
            raise InvalidInput("a field is too long")
        result = await request.app[LOGIN].mfa(
            challenge, code, client_address(request), browser=True,
            known_device=cookies.known_device_cookie(request),
        )
    except BrokerError as exc:
        # Start again from the password: a challenge is short-lived and single-use.
        return _failed(request, token, exc, _password_form(token))
    failed = result.failed_sign_ins
    if result.recovery_codes:
        codes = join(render("<li><code>{c}</code></li>", c=c) for c in result.recovery_codes)
        response = page("Recovery codes", render(_RECOVERY, codes=codes))
    elif failed is not None:  # the person sees that someone tried, before going on
        response = page("Failed sign-in attempts", render(
            _FAILED_SIGN_INS, count=failed.count,
            last=failed.last_at.strftime("%Y-%m-%d %H:%M UTC") if failed.last_at else "-",
        ))
    else:
        response = see_other("/")
    cookies.set_session(response, request, request.app[SETTINGS], result.tokens)
    cookies.set_known_device(response, request, request.app[SETTINGS], result.known_device)
    response.del_cookie(SIGNIN_COOKIE, path="/signin")
    return response


async def logout(request: web.Request, principal: Principal) -> web.StreamResponse:
    """The sign-out form (its CSRF token checked by the route's guard)."""
    await request.app[SESSIONS].logout(principal)
    response = see_other("/signin") if wants_html(request) else reply({"status": "signed_out"})
    cookies.clear_session(response)
    return response
