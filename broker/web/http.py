"""Small helpers that every handler uses: reading a JSON body, replying with JSON, the
caller's address."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from broker.errors import InvalidInput
from broker.web.appkeys import SERVICES
from shared.errors import ErrorCode
from shared.wire import WireError

MAX_EMAIL = 320
MAX_PASSWORD = 1024


def client_address(request: web.Request) -> str:
    """The client's address: from the trusted proxy's header when one is configured."""
    header = request.app[SERVICES].settings.client_address_header
    if header:
        forwarded = request.headers.get(header, "")
        if forwarded.strip():
            return forwarded.split(",")[-1].strip()[:100]
    return request.remote or "unknown"


async def read_json(request: web.Request) -> Any:
    """The request's JSON body. aiohttp enforces the app's body size limit (413) in read()."""
    raw = await request.read()
    if not raw:
        raise InvalidInput("a JSON body is required", code=ErrorCode.MALFORMED_JSON)
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidInput("the body is not valid JSON", code=ErrorCode.MALFORMED_JSON) from None


def json_object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise WireError("body", "must be a JSON object")
    return data


def text_field(data: dict[str, Any], name: str, max_len: int) -> str:
    """A required, non-empty string field of a JSON object."""
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise WireError(name, "must be a non-empty string")
    if len(value) > max_len:
        raise WireError(name, f"must be at most {max_len} characters long")
    return value


def reply(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def error_reply(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)
