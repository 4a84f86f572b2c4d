"""The one error middleware, and the headers every response carries."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from broker.errors import BrokerError, RateLimited, ServiceUnavailable
from broker.web.appkeys import SERVICES
from broker.web.http import error_reply
from shared.errors import ErrorCode
from shared.wire import WireError

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
            log.warning("%s %s failed: %s", request.method, request.path, exc.message)
        response = error_reply(exc.status, exc.code, exc.message)
        if isinstance(exc, RateLimited | ServiceUnavailable) and exc.retry_after is not None:
            response.headers["Retry-After"] = str(exc.retry_after)
        return response
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
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_reply(500, ErrorCode.INTERNAL, "internal error")


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
