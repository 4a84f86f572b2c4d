"""A tiny, escaping template helper and the page frame (layout, CSP, error pages).

`render(template, **values)` escapes every value that is not already `Markup`, so a handler
cannot forget to; templates hold no logic, only `{name}` placeholders.
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any

from aiohttp import web

from broker.errors import BrokerError, RateLimited
from broker.identity import Principal

PageHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class Markup(str):
    """Text that is already HTML (made by `render`, `join` or `esc`)."""

    __slots__ = ()


EMPTY = Markup("")


def esc(value: Any) -> Markup:
    return value if isinstance(value, Markup) else Markup(html.escape(str(value), quote=True))


def render(template: str, **values: Any) -> Markup:
    return Markup(template.format(**{k: esc(v) for k, v in values.items()}))


def join(parts: Iterable[Markup]) -> Markup:
    return Markup("".join(esc(p) for p in parts))


def when(value: datetime | None) -> str:
    """A UTC timestamp as people read it (every page says times are UTC)."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "—"


def page_csp(media_origins: Iterable[str] = ()) -> str:
    """The pages' policy: own scripts and styles only; media only from the given origins."""
    origins = " ".join(sorted(set(media_origins)))
    return f"{_CSP}; media-src {origins}" if origins else _CSP


_LAYOUT = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{title} · bucketreel</title>
<link rel="stylesheet" href="/static/app.css">
{scripts}
</head>
<body>
<header class="top"><a class="brand" href="/">bucketreel</a>{nav}</header>
<main>
<h1>{title}</h1>
{body}
</main>
</body>
</html>
"""

_NAV = """<nav id="session" data-csrf="{csrf}" data-expires-in="{expires_in}">{links}
<span class="who">{email} ({role})</span>
<form method="post" action="/logout" class="inline">
<input type="hidden" name="csrf_token" value="{csrf}">
<button type="submit">Sign out</button>
</form></nav>"""


def nav(principal: Principal, csrf: str, email: str = "", expires_in: int = 0) -> Markup:
    """The signed-in pages' top bar; it also tells `session.js` the session's CSRF token and
    how many seconds the access cookie has left (relative, so the browser's clock may be off)."""
    links = [render('<a href="/">Home</a>')]
    links.append(render('<a href="/receipts">Who viewed my recordings</a>'))
    if principal.role == "admin":
        links.append(render('<a href="/audit">Audit log</a>'))
    return render(
        _NAV, links=join(links), email=email or principal.user_id, role=principal.role, csrf=csrf,
        expires_in=expires_in,
    )


def page(
    title: str,
    body: Markup,
    *,
    top: Markup = EMPTY,
    scripts: Iterable[str] = (),
    media_origins: Iterable[str] = (),
    status: int = 200,
) -> web.Response:
    if top:  # a signed-in page keeps its session alive while it is open
        scripts = ["session.js", *scripts]
    tags = join(render('<script src="/static/{name}" defer></script>', name=s) for s in scripts)
    text = render(_LAYOUT, title=title, body=body, nav=top, scripts=tags)
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
            body = render(
                '<p class="error">{message}</p><p><a href="/">Back to the start page</a></p>',
                message=exc.message,
            )
            response = page(_TITLES.get(exc.status, "Error"), body, status=exc.status)
            if isinstance(exc, RateLimited):
                response.headers["Retry-After"] = str(exc.retry_after)
            return response

    return wrapped


_TITLES = {403: "Not allowed", 404: "Not found", 409: "Not ready", 429: "Too many attempts"}
