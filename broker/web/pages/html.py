"""The page frame: layout and CSP, error pages.

Templates are rendered by the one environment `broker.web.templating` makes at app start;
they hold no logic beyond loops and conditions; handlers hand them plain values.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from broker.errors import BrokerError, RateLimited
from broker.identity import Principal
from broker.web.appkeys import PRINCIPAL, SERVICES, TEMPLATES
from broker.web.pages import zone
from broker.web.templating import when, zone_name

__all__ = [
    "PageHandler", "Top", "html_errors", "nav", "page", "page_csp", "top_bar", "wants_html", "when",
]

log = logging.getLogger("broker.web.pages")
PageHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def page_csp(media_origins: Iterable[str] = ()) -> str:
    """The pages' policy: own scripts and styles only; media only from the given origins."""
    origins = " ".join(sorted(set(media_origins)))
    return f"{_CSP}; media-src {origins}" if origins else _CSP


@dataclass(frozen=True, slots=True)
class Top:
    """The signed-in pages' top bar; it also tells `session.js` the session's CSRF token and
    how many seconds the access cookie has left (relative, so the browser's clock may be off)."""

    who: str  # the email (the user id if the row is gone)
    role: str
    csrf: str
    expires_in: int
    # The name the person goes by, shown instead of the email when set (the email on hover).
    name: str = ""
    # Admins only: when the broker found the tenant's storage access revoked (base.html's
    # banner on every page); "" while access works.
    storage_revoked_since: str = ""


def nav(
    principal: Principal, csrf: str, email: str = "", expires_in: int = 0,
    storage_revoked_since: str = "", name: str | None = None,
) -> Top:
    return Top(
        who=email or principal.user_id, role=principal.role, csrf=csrf, expires_in=expires_in,
        name=name or "", storage_revoked_since=storage_revoked_since,
    )


async def top_bar(request: web.Request, principal: Principal) -> Top:
    """The signed-in pages' top bar for this principal: email, CSRF token, the access
    cookie's seconds left and, for an admin, whether storage access is revoked (a read of
    the state the storage watch keeps, `broker.storage.monitor`). It also sets the request's
    time zone for what the page shows (`zone.resolve`): call it before rendering times."""
    services = request.app[SERVICES]
    me = await services.viewing.me(principal)
    zone.resolve(request, me.tenant_zone)
    left = principal.expires_at - int(services.clock().timestamp())
    revoked = None
    if principal.role == "admin":
        revoked = await services.storage.revoked_since(principal.tenant_id)
    return nav(
        principal, services.sessions.csrf_token(principal.session_id), me.email, max(0, left),
        storage_revoked_since=f"{when(revoked)} ({zone_name()})" if revoked else "",
        name=me.display_name,
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
                message=exc.message, status=exc.status, top=await _frame(request),
            )
            if isinstance(exc, RateLimited):
                response.headers["Retry-After"] = str(exc.retry_after)
            return response

    return wrapped


async def _frame(request: web.Request) -> Top | None:
    """The signed-in top bar for an error page, when the caller was verified (a failure to
    build it leaves the plain frame: the error is what the page must show)."""
    principal = request.get(PRINCIPAL)
    if principal is None:
        return None
    try:
        return await top_bar(request, principal)
    except Exception:  # the database may be what failed: the error page must still answer
        log.warning("error page: no top bar (%s)", principal.kind, exc_info=True)
        return None


_TITLES = {403: "Not allowed", 404: "Not found", 409: "Not ready", 429: "Too many attempts"}
