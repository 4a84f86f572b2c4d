"""The pages' own CSS and JavaScript files (`broker/web/static/`), by exact name only."""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

from broker.errors import NotFound

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
_NAME = re.compile(r"^[a-z0-9-]+\.(css|js|svg)$")
_TYPES = {"css": "text/css", "js": "text/javascript", "svg": "image/svg+xml"}


async def static_file(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    match = _NAME.match(name)
    path = STATIC_DIR / name
    if match is None or not path.is_file():
        raise NotFound("no such file")
    return web.Response(
        body=path.read_bytes(), content_type=_TYPES[match.group(1)], charset="utf-8"
    )
