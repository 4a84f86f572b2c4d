"""Small helpers that every handler uses: reading a JSON body, replying with JSON."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from broker.errors import InvalidInput
from shared.errors import ErrorCode


async def read_json(request: web.Request) -> Any:
    """The request's JSON body. aiohttp enforces the app's body size limit (413) in read()."""
    raw = await request.read()
    if not raw:
        raise InvalidInput("a JSON body is required", code=ErrorCode.MALFORMED_JSON)
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidInput("the body is not valid JSON", code=ErrorCode.MALFORMED_JSON) from None


def reply(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def error_reply(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)
