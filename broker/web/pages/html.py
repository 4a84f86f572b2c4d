"""The page frame: the Jinja2 environment, layout and CSP, error pages.

The templates are files in `broker/web/templates/`, loaded by one environment made at app
start (`environment`, held under `TEMPLATES`) with autoescaping on: every value is escaped
unless it is MarkupSafe's `Markup` (made only for the QR code's SVG, by segno). Templates
hold no logic beyond loops and conditions; handlers hand them plain values.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jinja2
from aiohttp import web

from broker.auth.tokens import Principal
from broker.errors import BrokerError, RateLimited
from broker.web.appkeys import TEMPLATES

PageHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def when(value: datetime | None) -> str:
    """A UTC timestamp as people read it (every page says times are UTC)."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "—"


def details(value: Mapping[str, Any]) -> str:
    """An audit entry's details on one line, keys sorted."""
    return ", ".join(f"{k}={v}" for k, v in sorted(value.items()))


def environment() -> jinja2.Environment:
    """The pages' templates, made once at app start (the app holds it under `TEMPLATES`)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("broker.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        auto_reload=False,
    )
    env.filters["when"] = when
    env.filters["details"] = details
    return env


def page_csp(media_origins: Iterable[str] = ()) -> str:
    """The pages' policy: own scripts and styles only; media only from the given origins."""
    origins = " ".join(sorted(set(media_origins)))
    return f"{_CSP}; media-src {origins}" if origins else _CSP


@dataclass(frozen=True, slots=True)
class Top:
    """The signed-in pages' top bar; it also tells `session.js` the session's CSRF token and
    how many seconds the access cookie has left (relative, so the browser's clock may be off)."""

    who: str
    role: str
    csrf: str
    expires_in: int


def nav(principal: Principal, csrf: str, email: str = "", expires_in: int = 0) -> Top:
    return Top(
        who=email or principal.user_id, role=principal.role, csrf=csrf, expires_in=expires_in
    )


def page(
    request: web.Request,
    template: str,
    *,
    title: str,
    top: Top | None = None,
    scripts: Iterable[str] = (),
    media_origins: Iterable[str] = (),
    status: int = 200,
    **values: Any,
) -> web.Response:
    """`template` (from `broker/web/templates/`) rendered in the layout, with the pages' CSP."""
    if top is not None:  # a signed-in page keeps its session alive while it is open
        scripts = ["session.js", *scripts]
    text = request.app[TEMPLATES].get_template(template).render(
        title=title, top=top, scripts=list(scripts), **values
    )
    response = web.Response(text=text, status=status, content_type="text/html", charset="utf-8")
    response.headers["Content-Security-Policy"] = page_csp(media_origins)
    return response


def wants_html(request: web.Request) -> bool:
    return "text/html" in request.headers.get("Accept", "")


def html_errors(handler: PageHandler) -> PageHandler:
    """Browsers get an HTML page (or the sign-in page for 401); API clients keep JSON errors."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except BrokerError as exc:
            if not wants_html(request):
                raise
            if exc.status == 401:
                return web.Response(status=303, headers={"Location": "/signin"})
            response = page(
                request, "error.html", title=_TITLES.get(exc.status, "Error"),
                message=exc.message, status=exc.status,
            )
            if isinstance(exc, RateLimited):
                response.headers["Retry-After"] = str(exc.retry_after)
            return response

    return wrapped


_TITLES = {403: "Not allowed", 404: "Not found", 409: "Not ready", 429: "Too many attempts"}
