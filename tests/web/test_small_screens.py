"""A phone's screen (390 x 844) and the rough edges: every page fits its width (the
navigation wraps, wide tables scroll inside themselves, the player's controls stay on
screen), error pages keep the signed-in frame, and the pages have an icon."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from tests.identity.people import Org, make_org
from tests.support.broker import BrokerProcess
from tests.support.s3 import S3Endpoint
from tests.web.browser import off_thread, sign_in

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

PHONE = (390, 844)
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "phone-player.png"
OVERFLOW = "document.documentElement.scrollWidth - document.documentElement.clientWidth"


@pytest.fixture(scope="module")
def org(broker: BrokerProcess, s3_endpoint: S3Endpoint) -> Org:
    return off_thread(make_org, broker, s3_endpoint)


@pytest.fixture(scope="module")
def phone(org: Org, chromium: Browser, broker: BrokerProcess) -> Page:
    return sign_in(chromium, broker.url, org.admin, viewport=PHONE)


def test_every_page_fits_a_phone(org: Org, phone: Page) -> None:
    pages = [
        "/", "/receipts", "/audit", f"/employees/{org.employee.user_id}",
        f"/recordings/{org.recording_id}", "/admin/people",
        f"/admin/people/{org.employee.user_id}", "/admin/devices", "/admin/enrollment",
        "/admin/storage", "/admin/policy", "/admin/organisation",
    ]
    wide = {}
    for path in pages:
        reply = phone.goto(path)
        assert reply is not None
        assert reply.status == 200, path
        if phone.evaluate(OVERFLOW) > 0:
            wide[path] = phone.evaluate("document.documentElement.scrollWidth")
    assert wide == {}, f"wider than {PHONE[0]} px: {wide}"
    phone.goto(f"/recordings/{org.recording_id}")
    for control in ("#play", "#speed", "#seek"):
        box = phone.locator(control).bounding_box()
        assert box is not None, control
        assert box["x"] >= 0, control
        assert box["x"] + box["width"] <= PHONE[0], f"{control} is off screen: {box}"
    shot = phone.screenshot(type="png", full_page=True)
    assert len(shot) < 400_000
    DOCS_SCREENSHOT.write_bytes(shot)


def test_an_error_page_keeps_the_frame_and_the_pages_have_an_icon(
    org: Org, phone: Page
) -> None:
    reply = phone.goto("/employees/no-such-person")
    assert reply is not None
    assert reply.status == 404
    assert phone.locator("nav#session").count() == 1, "the signed-in top bar is there"
    assert org.admin.email in phone.locator("nav#session").inner_text()
    assert phone.locator("p.error").inner_text() != ""
    icon = phone.locator("link[rel=icon]").get_attribute("href")
    assert icon == "/static/icon.svg"
    served = phone.request.get(icon)
    assert served.status == 200
    assert served.headers["content-type"].startswith("image/svg+xml")
    assert served.body().startswith(b"<svg")
