"""Plain HTML forms on signed-in pages carry the session's CSRF token as a form field.

The route guard (`broker.web.guard`) checks CSRF in one place; for a route that takes a
form, the field is put on the request where `broker.web.cookies.csrf_header` finds it.
"""

from __future__ import annotations

from aiohttp import web

from broker.web.cookies import FORM_CSRF

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def csrf_from_form(request: web.Request) -> web.Request:
    if request.content_type in FORM_TYPES:
        token = (await request.post()).get("csrf_token")
        if isinstance(token, str):
            request[FORM_CSRF] = token
    return request
