"""Which time zone a page shows times in, and cuts days in.

The tenant's zone when its admins set one (`PUT /api/v1/admin/organisation`: one zone for
the whole organisation, so every viewer cuts a day the same way); otherwise the viewer's
browser zone, which `zone.js` puts in the `bucketreel_tz` cookie; otherwise UTC. A name is
used only if it is an IANA zone this machine's database knows, so a forged cookie cannot
name anything else.
"""

from __future__ import annotations

from datetime import UTC, tzinfo
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

from aiohttp import web

from broker.errors import InvalidInput
from broker.web.templating import use_zone, zone_name

__all__ = ["COOKIE", "api_zone", "asked", "known_zones", "parse_zone", "resolve", "zone_name"]

COOKIE = "bucketreel_tz"
MAX_NAME = 64


@cache
def known_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def parse_zone(name: str | None) -> tzinfo | None:
    """The zone of an IANA name, or None when it is not one."""
    if not name or len(name) > MAX_NAME or name not in known_zones():
        return None
    return UTC if name == "UTC" else ZoneInfo(name)


def resolve(request: web.Request, tenant_zone: str | None) -> tzinfo:
    """This request's zone (the tenant's, the browser's, or UTC), set for its templates."""
    for source, name in (("tenant", tenant_zone), ("browser", request.cookies.get(COOKIE))):
        zone = parse_zone(name)
        if zone is not None:
            use_zone(zone, source)
            return zone
    use_zone(UTC, "default")
    return UTC


def asked(request: web.Request) -> tzinfo | None:
    """The zone an API caller names in `?zone=` (None: none named); 400 for a name that is
    not an IANA zone."""
    name = request.query.get("zone")
    chosen = parse_zone(name)
    if name and chosen is None:
        raise InvalidInput("zone must be an IANA time zone name, such as Europe/Berlin")
    return chosen


def api_zone(request: web.Request, tenant_zone: str | None) -> tzinfo:
    """An API route's zone: `?zone=`, else the pages' (`resolve`)."""
    return asked(request) or resolve(request, tenant_zone)
