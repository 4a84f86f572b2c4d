"""The HTTP side of the wire models: reading a request body into its model, replying with one.

A JSON route takes only `application/json` (415 otherwise: a browser's cross-site form can
send `text/plain` without asking, never JSON); the body is decoded once, into the route's
model, which refuses it with a WireError naming the field (400).
"""

from __future__ import annotations

from typing import TypeVar

import msgspec
from aiohttp import web

from broker.errors import BrokerError
from broker.web.appkeys import SERVICES
from shared.errors import ErrorCode
from shared.model import MalformedJSON, Model

M = TypeVar("M", bound=Model)
JSON_TYPE = "application/json"


class UnsupportedMediaType(BrokerError):
    status = 415
    code = ErrorCode.UNSUPPORTED_MEDIA_TYPE


def client_address(request: web.Request) -> str:
    """The client's address: from the trusted proxy's header when one is configured."""
    header = request.app[SERVICES].settings.client_address_header
    if header:
        forwarded = request.headers.get(header, "")
        if forwarded.strip():
            return forwarded.split(",")[-1].strip()[:100]
    return request.remote or "unknown"


def public_url(request: web.Request) -> str:
    """The broker's URL as the caller reached it (https when TLS ends at a proxy,
    BUCKETREEL_BEHIND_TLS): what an agent's `--broker` takes."""
    scheme = "https" if request.app[SERVICES].settings.behind_tls else request.scheme
    return f"{scheme}://{request.host}"


async def read_body(request: web.Request, model: type[M]) -> M:
    """The request's body as `model`. aiohttp enforces the app's body size limit (413) in
    read(); an empty body is malformed JSON whatever its type says."""
    raw = await request.read()
    if not raw:
        raise MalformedJSON("body", "a JSON body is required")
    if request.content_type != JSON_TYPE:
        raise UnsupportedMediaType(f"the body must be JSON (Content-Type: {JSON_TYPE})")
    return model.decode(raw)


def shape(model: type[M], data: object) -> M:
    """A service's reply data as the route's reply model (a reply the model refuses is the
    broker's own bug: msgspec's error surfaces as a 500 with its traceback in the log)."""
    return msgspec.convert(data, model)


def reply(data: Model, status: int = 200) -> web.Response:
    return web.Response(body=data.encode(), status=status, content_type=JSON_TYPE)


def error_reply(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)
