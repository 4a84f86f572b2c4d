"""Times in the viewer's zone: the organisation's if its admins set one, else the browser's
(the `bucketreel_tz` cookie that zone.js sets), else UTC; days are cut in that zone."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from urllib.parse import quote
from zoneinfo import ZoneInfo

from broker.clock import day_bounds, local_hours
from tests.identity.people import Org
from tests.support.api import Reply

# UTC+14 and UTC-12: 26 hours apart, so "now" is on a different calendar day in each.
EAST, WEST = "Pacific/Kiritimati", "Etc/GMT+12"


def test_a_day_is_cut_in_its_zone_when_the_clocks_change() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    start, end = day_bounds(date(2026, 3, 29), berlin)  # clocks go forward at 02:00
    assert (start, end - start) == (datetime(2026, 3, 28, 23, tzinfo=UTC), timedelta(hours=23))
    assert [h for h, _ in local_hours(date(2026, 3, 29), berlin)] == [
        h for h in range(24) if h != 2
    ]
    start, end = day_bounds(date(2026, 10, 25), berlin)  # and back at 03:00
    assert end - start == timedelta(hours=25)
    assert day_bounds(date(2026, 1, 1)) == (
        datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    )


def days_listed(reply: Reply) -> list[str]:
    assert reply.status == 200, reply.raw[:300]
    return [d.decode() for d in re.findall(rb'href="\?day=(\d{4}-\d\d-\d\d)"', reply.raw)]


def day_page(org: Org, zone: str | None = None) -> Reply:
    headers = {"Cookie": f"bucketreel_tz={zone}"} if zone else {}
    return org.api.call(
        "GET", f"/employees/{org.employee.user_id}", token=org.manager.access_token,
        headers=headers,
    )


def local_day(zone: str) -> str:
    return datetime.now(ZoneInfo(zone)).date().isoformat()


def test_day_pages_cut_days_in_the_browsers_zone_unless_the_tenant_set_one(org: Org) -> None:
    admin = org.admin.access_token
    org_path = "/api/v1/admin/organisation"
    assert org.api.call("GET", org_path, token=admin).body["time_zone"] is None
    try:
        # The org's recording was made just now: in each zone it is on that zone's today.
        assert local_day(EAST) in days_listed(day_page(org, EAST))
        assert local_day(WEST) in days_listed(day_page(org, WEST))
        shown = day_page(org, EAST)
        assert f"times in {EAST}".encode() in shown.raw
        assert b' UTC">' in shown.raw, "each time has its UTC time on hover"
        # A cookie naming no zone this machine knows is ignored: UTC.
        assert b"times in UTC" in day_page(org, "../../etc/passwd").raw

        set_zone = org.api.call("PUT", org_path, {"time_zone": WEST}, token=admin)
        assert set_zone.status == 200, set_zone.body
        assert set_zone.body == {"name": org.tenant.name, "time_zone": WEST}
        # The organisation's zone wins over the browser's, for every viewer.
        assert local_day(WEST) in days_listed(day_page(org, EAST))
        assert f"times in {WEST}".encode() in day_page(org, EAST).raw
        audit = org.api.call(
            "GET", "/api/v1/admin/audit/export?action=tenant.time_zone_set", token=admin
        )
        assert f'"to": "{WEST}"'.encode() in audit.raw or f'"to":"{WEST}"'.encode() in audit.raw
    finally:
        cleared = org.api.call("PUT", org_path, {"time_zone": None}, token=admin)
        assert cleared.status == 200
    assert cleared.body["time_zone"] is None


def test_an_unknown_zone_is_refused_naming_the_field(org: Org) -> None:
    for bad in ("Mars/Olympus_Mons", "../UTC", "x" * 65):
        reply = org.api.call(
            "PUT", "/api/v1/admin/organisation", {"time_zone": bad}, token=org.admin.access_token
        )
        assert reply.status == 400, bad
        assert "time_zone" in reply.body["message"], reply.body
    for who in (org.manager, org.employee):
        reply = org.api.call(
            "PUT", "/api/v1/admin/organisation", {"time_zone": EAST}, token=who.access_token
        )
        assert reply.status == 403
    assert org.api.call(
        "GET", "/api/v1/admin/organisation", token=org.admin.access_token
    ).body["time_zone"] is None


def test_the_audit_export_cuts_its_day_in_the_zone_asked(org: Org) -> None:
    admin = org.admin.access_token
    path = "/api/v1/admin/audit/export?day={day}&zone={zone}"
    for zone in (EAST, WEST):
        found = org.api.call(
            "GET", path.format(day=local_day(zone), zone=quote(zone)), token=admin
        )
        assert found.status == 200
        assert found.raw.count(b"\n") >= 1, f"today's entries in {zone}"
    bad = org.api.call("GET", path.format(day=local_day(EAST), zone="Nowhere/Land"), token=admin)
    assert bad.status == 400
    assert "zone" in bad.body["message"]
