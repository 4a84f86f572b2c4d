"""The one error middleware, the same-origin rule for state-changing requests, and the
headers every response carries."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler

from broker.errors import BrokerError, Forbidden, RateLimited, ServiceUnavailable
from broker.web.appkeys import SERVICES
from broker.web.http import error_reply
from broker.web.logs import loggable_path
from shared.errors import ErrorCode
from shared.model import MalformedJSON, WireError

log = logging.getLogger("broker.http")

_HTTP_CODES = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHENTICATED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.BODY_TOO_LARGE,
}


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Maps every failure to `{"error": code, "message": text}` with the right status."""
    try:
        return await handler(request)
    except BrokerError as exc:
        if exc.status >= 500:
            log.warning(
                "%s %s failed: %s", request.method, loggable_path(request.path), exc.message
            )
        response = error_reply(exc.status, exc.code, exc.message)
        if isinstance(exc, RateLimited | ServiceUnavailable) and exc.retry_after is not None:
            response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except MalformedJSON as exc:
        return error_reply(400, ErrorCode.MALFORMED_JSON, exc.message)
    except WireError as exc:
        return error_reply(400, ErrorCode.INVALID_FIELD, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, ErrorCode.BAD_REQUEST)
        message = "request body is too large" if exc.status == 413 else exc.reason
        response = error_reply(exc.status, code, message)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        log.exception("unhandled error in %s %s", request.method, loggable_path(request.path))
        return error_reply(500, ErrorCode.INTERNAL, "internal error")


STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _own_hosts(request: web.Request) -> set[str]:
    """The names this broker is reached by: the Host header, and behind a trusted proxy (one
    whose client-address header is configured) the host the proxy says it forwarded."""
    hosts = {request.host.lower()}
    if request.app[SERVICES].settings.client_address_header:
        forwarded = request.headers.get("X-Forwarded-Host", "")
        hosts.update(h.strip().lower() for h in forwarded.split(",") if h.strip())
    return hosts


@web.middleware
async def same_origin(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A state-changing request from another site is refused (403) before any handler runs.

    `Sec-Fetch-Site` decides when the browser sends it: `cross-site` and `same-site` (another
    origin of the site) are refused, `same-origin` and `none` (the person's own action) pass;
    a browser vouching for the origin may still send `Origin: null`, as Chromium does for a
    form under the pages' `Referrer-Policy: no-referrer`. Without it, an `Origin` that is not
    this broker's (`null` included) is refused. Agents and scripts send neither header.
    """
    if request.method not in STATE_CHANGING:
        return await handler(request)
    fetch_site = request.headers.get("Sec-Fetch-Site", "").lower()
    if fetch_site in ("cross-site", "same-site"):
        raise Forbidden("refused: a request from another site", code=ErrorCode.CROSS_SITE)
    origin = request.headers.get("Origin")
    if origin is not None and fetch_site not in ("same-origin", "none"):
        try:
            netloc = urlsplit(origin).netloc.lower()
        except ValueError:
            netloc = ""
        if not netloc or netloc not in _own_hosts(request):
            raise Forbidden("refused: a request from another origin", code=ErrorCode.CROSS_SITE)
    return await handler(request)


CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
HSTS = "max-age=63072000; includeSubDomains"


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    if request.secure or request.app[SERVICES].settings.behind_tls:
        headers.setdefault("Strict-Transport-Security", HSTS)
    headers.setdefault("Cache-Control", "no-store")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Frame-Options", "DENY")
