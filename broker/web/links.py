"""Links the broker hands out to be opened later (an invitation's), made from the request the
admin sent: the host they reached the broker by, https behind a TLS proxy."""

from __future__ import annotations

from aiohttp import web

from broker.web.appkeys import SERVICES

INVITE_PATH = "/invite/"


def public_base(request: web.Request) -> str:
    """This broker's origin as the caller reached it (`BUCKETREEL_BEHIND_TLS=1`: https)."""
    scheme = "https" if request.app[SERVICES].settings.behind_tls else request.scheme
    return f"{scheme}://{request.host}"


def invite_url(request: web.Request, token: str) -> str:
    return public_base(request) + INVITE_PATH + token
