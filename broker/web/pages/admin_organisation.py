"""The admin's organisation page: the time zone the tenant's pages cut days in."""

from __future__ import annotations

from aiohttp import web

from broker.errors import InvalidInput
from broker.identity import Principal
from broker.web.appkeys import SERVICES
from broker.web.pages import forms, zone
from broker.web.pages.html import page
from broker.web.pages.views import top_bar


async def organisation_page(request: web.Request, principal: Principal) -> web.Response:
    return await _render(request, principal)


async def organisation_form(request: web.Request, principal: Principal) -> web.Response:
    fields = await forms.read_form(request)
    wanted = fields.get("time_zone", "").strip()
    try:
        await request.app[SERVICES].organisation.set_time_zone(
            principal.tenant_id, wanted or None, actor=f"user:{principal.user_id}"
        )
    except InvalidInput as exc:
        return await _render(request, principal, error=exc.message, status=400, chosen=wanted)
    return await _render(request, principal, saved=True)


async def _render(
    request: web.Request, principal: Principal, *, error: str = "", saved: bool = False,
    status: int = 200, chosen: str | None = None,
) -> web.Response:
    top = await top_bar(request, principal)
    current = await request.app[SERVICES].organisation.describe(principal.tenant_id)
    return page(
        request, "admin_organisation.html", title="Organisation", top=top, status=status,
        name=current["name"], time_zone=current["time_zone"] or "",
        chosen=current["time_zone"] or "" if chosen is None else chosen,
        zones=sorted(zone.known_zones()), error=error, saved=saved,
    )
