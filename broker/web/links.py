"""Links the broker hands out to be opened later (an invitation's), made from the request the
admin sent: the host they reached the broker by (`broker.web.http.public_url`)."""

from __future__ import annotations

from aiohttp import web

from broker.web.http import public_url

INVITE_PATH = "/invite/"


def invite_url(request: web.Request, token: str) -> str:
    return public_url(request) + INVITE_PATH + token
