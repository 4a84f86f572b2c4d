"""Browser sessions: the access token in an HttpOnly cookie, CSRF protection for it, and the
refresh cookie that keeps a session alive while a page is open.

The access and CSRF cookies are `Secure; SameSite=Lax; Path=/` (the manager pages need them
too), the access cookie `HttpOnly`. The refresh cookie (`bucketreel_refresh`) is `HttpOnly;
Secure; SameSite=Strict` and is sent only to the refresh route (`Path=/api/v1/auth/refresh`),
so no page or other API request ever carries it; it holds a refresh token of the session's
own family (`broker.auth.sessions`), which only that route accepts. `Secure` is dropped only
in explicit development mode (`BUCKETREEL_DEV_MODE=1`) for a request to http://localhost,
where browsers would not send it back. A state-changing request authenticated by a cookie
must carry the session's CSRF token in `X-CSRF-Token` (the token is handed to the page at
login, is in every signed-in page and in the readable `bucketreel_csrf` cookie); bearer-token
requests need none, since a browser never attaches those by itself.

Before there is a session, the sign-in page hands the browser a double-submit token: a random
value in the HttpOnly, SameSite=Strict `bucketreel_signin` cookie, which must come back in the
sign-in forms, and in `X-CSRF-Token` for an API sign-in that asks for cookies (`cookie: true`
on `/api/v1/auth/mfa`). A cross-site page can neither read that cookie nor the page.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from broker.auth import known_device
from broker.auth.sessions import SessionTokens
from broker.settings import Settings

ACCESS_COOKIE = "bucketreel_session"
CSRF_COOKIE = "bucketreel_csrf"
REFRESH_COOKIE = "bucketreel_refresh"
SIGNIN_COOKIE = "bucketreel_signin"
REFRESH_PATH = "/api/v1/auth/refresh"
CSRF_HEADER = "X-CSRF-Token"
FORM_CSRF = "bucketreel.form_csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


def secure_cookies(request: web.Request, settings: Settings) -> bool:
    host = (request.url.host or "").lower()
    local_http = request.scheme == "http" and host in _LOCAL_HOSTS
    return not (settings.dev_mode and local_http)


def set_session(
    response: web.StreamResponse, request: web.Request, settings: Settings, tokens: SessionTokens
) -> None:
    """The session's cookies: access and CSRF, and the refresh cookie of a browser session."""
    secure = secure_cookies(request, settings)
    for name, value, httponly in (
        (ACCESS_COOKIE, tokens.access_token, True),
        (CSRF_COOKIE, tokens.csrf_token, False),
    ):
        response.set_cookie(
            name,
            value,
            path="/",
            secure=secure,
            httponly=httponly,
            samesite="Lax",
            max_age=tokens.expires_in,
        )
    if tokens.browser:
        response.set_cookie(
            REFRESH_COOKIE,
            tokens.refresh_token,
            path=REFRESH_PATH,
            secure=secure,
            httponly=True,
            samesite="Strict",
            max_age=tokens.refresh_expires_in,
        )


def set_known_device(
    response: web.StreamResponse, request: web.Request, settings: Settings, value: str
) -> None:
    """The known-device cookie (`broker.auth.known_device`), after a full sign-in: sent to
    the sign-in routes of this site only, never readable by a script."""
    if not value:
        return
    response.set_cookie(
        known_device.COOKIE,
        value,
        path="/",
        secure=secure_cookies(request, settings),
        httponly=True,
        samesite="Strict",
        max_age=known_device.KNOWN_DEVICE_TTL,
    )


def known_device_cookie(request: web.Request) -> str | None:
    return request.cookies.get(known_device.COOKIE) or None


def clear_session(response: web.StreamResponse) -> None:
    for name in (ACCESS_COOKIE, CSRF_COOKIE):
        response.del_cookie(name, path="/")
    response.del_cookie(REFRESH_COOKIE, path=REFRESH_PATH)


def access_cookie(request: web.Request) -> str | None:
    return request.cookies.get(ACCESS_COOKIE) or None


def refresh_cookie(request: web.Request) -> str | None:
    return request.cookies.get(REFRESH_COOKIE) or None


def csrf_header(request: web.Request) -> str:
    """The CSRF token sent: the header, or a page form's `csrf_token` field (put on the
    request by `broker.web.pages.forms` for the routes that take plain HTML forms)."""
    form_token = request.get(FORM_CSRF, "")
    from_form = form_token if isinstance(form_token, str) else ""
    sent = request.headers.get(CSRF_HEADER, "") or from_form
    return sent if sent.isascii() else ""  # never a token; compare_digest takes only ASCII


def signin_token_ok(request: web.Request, sent: str | None = None) -> bool:
    """Whether the sign-in double-submit token came back: `sent` (a form's field) or the
    `X-CSRF-Token` header, equal to the `bucketreel_signin` cookie."""
    expected = request.cookies.get(SIGNIN_COOKIE, "")
    presented = request.headers.get(CSRF_HEADER, "") if sent is None else sent
    if not expected or not expected.isascii() or not presented.isascii():
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())
