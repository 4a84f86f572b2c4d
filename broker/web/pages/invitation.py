"""The invitation link's page (`/invite/{token}`): the invited person chooses a password (twice,
under the operator's password rules), then signs in at /signin, where their first sign-in
enrols TOTP (the QR code, then the recovery codes).

There is no session yet, so the form is protected as the sign-in forms are: a double-submit
token in an HttpOnly, SameSite=Strict cookie that must come back in the form. The link's
token is the credential: it is never logged (`broker.web.logs` cuts it from the path) and the
page sends no referrer.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from broker.auth.invites import Invitation
from broker.errors import BrokerError, Forbidden, InvalidInput
from broker.web import cookies
from broker.web.appkeys import SERVICES
from broker.web.pages.forms import read_form
from broker.web.pages.html import page
from broker.web.pages.signin import form_token, set_form_token
from broker.web.templating import utc_text
from shared.api import MAX_PASSWORD
from shared.wire import MAX_TOKEN

TITLE = "Accept your invitation"


def _token_of(request: web.Request) -> str:
    token = request.match_info["token"]
    if len(token) > MAX_TOKEN or not token.isascii():
        raise InvalidInput("this invitation link is not valid")
    return token


def _render(
    request: web.Request,
    *,
    invitation: Invitation | None,
    error: str = "",
    status: int = 200,
) -> web.Response:
    token = form_token(request)
    values: dict[str, Any] = {"csrf": token, "error": error, "invitation": None}
    if invitation is not None:
        values["invitation"] = {
            "email": invitation.email, "role": invitation.role, "tenant": invitation.tenant,
            "expires": utc_text(invitation.expires_at),
        }
    response = page(request, "invitation.html", title=TITLE, status=status, **values)
    set_form_token(response, request, token)
    return response


async def invitation_page(request: web.Request) -> web.Response:
    try:
        found = await request.app[SERVICES].invitations.look_up(_token_of(request))
    except BrokerError as exc:
        return _render(request, invitation=None, error=exc.message, status=exc.status)
    return _render(request, invitation=found)


async def accept(request: web.Request) -> web.Response:
    form = await read_form(request)
    if not cookies.signin_token_ok(request, form.get("csrf_token", "")):
        raise Forbidden("the form expired; open the invitation link again")
    services = request.app[SERVICES]
    token = _token_of(request)
    try:
        found = await services.invitations.look_up(token)
    except BrokerError as exc:
        return _render(request, invitation=None, error=exc.message, status=exc.status)
    password, again = form.get("password", ""), form.get("password_again", "")
    try:
        if len(password) > MAX_PASSWORD:
            raise InvalidInput(f"password must be at most {MAX_PASSWORD} characters long")
        if password != again:
            raise InvalidInput("the two passwords differ; type the same password twice")
        accepted = await services.invitations.accept(token, password)
    except BrokerError as exc:
        return _render(request, invitation=found, error=exc.message, status=exc.status)
    signin = "/signin?" + urlencode({"tenant": accepted.tenant, "email": accepted.email})
    return page(
        request, "invitation_done.html", title="Your password is set", tenant=accepted.tenant,
        email=accepted.email, signin=signin,
    )
