"""Plain HTML forms: reading one without letting a malformed body become a 500, and the
session's CSRF token that forms on signed-in pages carry as a field.

The route guard (`broker.web.guard`) checks CSRF in one place; for a route that takes a
form, the field is put on the request where `broker.web.cookies.csrf_header` finds it.
"""

from __future__ import annotations

from aiohttp import hdrs, web
from aiohttp.helpers import parse_mimetype

from broker.errors import InvalidInput
from broker.web.cookies import FORM_CSRF

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def read_form(request: web.Request) -> dict[str, str]:
    """The form's text fields (files are ignored); 400 for a body that is not a form."""
    if request.content_type not in FORM_TYPES:
        raise InvalidInput("the body must be a form (application/x-www-form-urlencoded)")
    if request.content_type == "multipart/form-data":
        boundary = parse_mimetype(request.headers.get(hdrs.CONTENT_TYPE, "")).parameters.get(
            "boundary", ""
        )
        if not boundary or len(boundary) > 70:
            raise InvalidInput("a multipart form needs a boundary of 1 to 70 characters")
    try:
        data = await request.post()
    except ValueError:  # a multipart body that does not follow its boundary, bad encoding
        raise InvalidInput("the form is malformed") from None
    return {k: v for k, v in data.items() if isinstance(v, str)}


async def csrf_from_form(request: web.Request) -> web.Request:
    if request.content_type in FORM_TYPES:
        token = (await read_form(request)).get("csrf_token")
        if isinstance(token, str):
            request[FORM_CSRF] = token
    return request
