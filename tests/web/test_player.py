"""A manager watches a real recording in headless Chromium; the employee sees that view.

The recording is made by the real agent program on the suite's Xvfb display, uploaded to
moto through presigned URLs; the browser signs in with TOTP codes made by pyotp, plays the
segments back to back, and fetches their bytes from the bucket, never from the broker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import Browser, Page, Response

from broker import admin
from tests.e2e.test_recording import agent
from tests.identity.people import Client, Person, make_person, verified_recording
from tests.support import agentlog
from tests.support.api import Operator, Tenant, enroll, enrollment_code, make_tenant
from tests.support.broker import BrokerProcess
from tests.support.display import XDisplay
from tests.support.s3 import S3Endpoint
from tests.web.browser import day_page, off_thread, pixels, sign_in, wait_until

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "player.png"
ZONE = "Asia/Tokyo"
MEDIA_TYPES = ("video/", "audio/", "application/octet-stream", "binary/")


@dataclass
class Scene:
    broker: BrokerProcess
    tenant: Tenant
    manager: Person
    employee: Person  # assigned to the manager; has a real recording
    other: Person  # not assigned; has a recording too
    recording_id: str
    other_recording_id: str
    pages: dict[str, Page] = field(default_factory=dict)


def record_real_screen(
    broker: BrokerProcess, tenant: Tenant, user_id: str, home: Path, display: str,
    run: tuple[str, ...] = ("--fps", "4", "--segment-seconds", "1.5", "--duration", "5"),
) -> str:
    """Enroll a real agent for `user_id` and record `display` with it (`run`: its flags)."""
    code = off_thread(enrollment_code, broker, tenant, user_id)
    enrolled = agent("enroll", "--broker", broker.url, "--code", code, home=home, display=display)
    assert enrolled.returncode == 0, enrolled.stderr
    done = agent("run", *run, home=home, display=display)
    assert done.returncode == 0, done.stderr + broker.log_tail()
    started = agentlog.events(done.stderr, "recording_started")[0]
    return str(started["recording_id"])


@pytest.fixture(scope="module")
def scene(
    broker: BrokerProcess, s3_endpoint: S3Endpoint, xvfb: XDisplay,
    tmp_path_factory: pytest.TempPathFactory,
) -> Scene:
    tenant = off_thread(make_tenant, broker, s3_endpoint)
    manager, employee, other = (
        off_thread(make_person, broker, tenant, role)
        for role in ("manager", "employee", "employee")
    )
    off_thread(
        Operator(broker).run, admin.assign, tenant=tenant.tenant_id, manager=manager.email,
        employee=employee.email,
    )
    recording_id = record_real_screen(
        broker, tenant, employee.user_id, tmp_path_factory.mktemp("agent"), xvfb.display
    )
    api = Client(broker.url)
    other_device = off_thread(enroll, api, broker, tenant, other.user_id)
    other_recording = verified_recording(api, other_device)
    return Scene(broker, tenant, manager, employee, other, recording_id, other_recording)


@pytest.fixture(scope="module")
def manager_page(scene: Scene, chromium: Browser) -> Page:
    return sign_in(chromium, scene.broker.url, scene.manager)


def csrf_of(page: Page) -> str:
    return next(c["value"] for c in page.context.cookies() if c["name"] == "bucketreel_csrf")


def view_url_request(page: Page, recording_id: str, seq: int) -> Any:
    return page.request.post(
        f"/api/v1/recordings/{recording_id}/segments/{seq}/view",
        headers={"X-CSRF-Token": csrf_of(page)},
    )


def test_a_manager_plays_a_real_recording_from_the_bucket(
    scene: Scene, manager_page: Page, s3_endpoint: S3Endpoint
) -> None:
    page = manager_page
    responses: list[Response] = []
    page.on("response", lambda reply: responses.append(reply))

    page.click(f"text={scene.employee.email}")
    page.wait_for_url(day_page(scene.employee.user_id))
    assert page.locator("svg.day rect.rec").count() >= 1, "the day bar shows recorded time"
    page.click(f"a[href='/recordings/{scene.recording_id}']")
    page.wait_for_selector("#player")
    segments = page.locator("#segments li").evaluate_all(
        "items => items.map(li => ({seq: +li.dataset.seq, ms: +li.dataset.durationMs}))"
    )
    assert len(segments) >= 3, segments
    listed = page.locator("#segments li").all_inner_texts()
    assert all(re.fullmatch(r"(\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d · [\d.]+ s", t)
               for t in listed), f"each segment's start as people read it, not ISO: {listed}"
    assert page.locator("#segments li time[datetime]").count() == len(segments), "UTC on hover"
    views = lambda: [r for r in responses if r.url.endswith("/view")]  # noqa: E731
    assert views() == [], "no view URL is minted before playback needs it"

    page.click("#play")
    wait_until(page, "document.getElementById('video').currentTime > 0.4")
    assert len(views()) == 1, "only the first segment's URL, just before it plays"
    assert page.locator("#clock").inner_text().endswith("UTC")

    third = sum(s["ms"] for s in segments[:2]) + 300
    page.evaluate(
        "ms => { const s = document.getElementById('seek'); s.value = ms;"
        " s.dispatchEvent(new Event('change')); }",
        third,
    )
    wait_until(
        page,
        "document.getElementById('player').dataset.seq === '2'"
        " && document.getElementById('video').readyState >= 2"
    )
    page.click("#play")  # pause on the third segment's picture
    position = int(page.locator("#player").get_attribute("data-position") or 0)
    assert position >= sum(s["ms"] for s in segments[:2]), position
    assert len(views()) <= len(segments)

    frame = pixels(page.locator("#video").screenshot())
    assert frame.std() > 10, "the video area shows a picture, not a uniform colour"
    assert frame.mean() > 20, "the video area is not black"
    assert len(np.unique(frame.reshape(-1, 3), axis=0)) > 10

    broker_replies = [r for r in responses if r.url.startswith(scene.broker.url)]
    for reply in broker_replies:
        kind = reply.headers.get("content-type", "")
        assert not kind.startswith(MEDIA_TYPES), f"{reply.url} answered {kind}"
    media = [r for r in responses if r.request.resource_type == "media"]
    assert media, "the video element fetched segment bytes"
    assert all(r.url.startswith(s3_endpoint.url + "/") for r in media), [r.url for r in media]
    assert all(r.status in (200, 206) for r in media)

    DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
    shot = page.screenshot(type="png")
    assert len(shot) < 300_000
    DOCS_SCREENSHOT.write_bytes(shot)


def test_a_manager_cannot_open_or_mint_for_an_unassigned_employee(
    scene: Scene, manager_page: Page
) -> None:
    page = manager_page
    day = page.goto(f"/employees/{scene.other.user_id}")
    assert day is not None
    assert day.status == 404
    assert scene.other.email not in page.content()
    player = page.goto(f"/recordings/{scene.other_recording_id}")
    assert player is not None
    assert player.status == 404

    refused = view_url_request(page, scene.other_recording_id, 0)
    assert refused.status == 404
    assert "url" not in refused.json()
    allowed = view_url_request(page, scene.recording_id, 0)
    assert allowed.status == 200, allowed.text()


def test_the_employee_sees_who_viewed_their_recording(
    scene: Scene, manager_page: Page, chromium: Browser
) -> None:
    minted = view_url_request(manager_page, scene.recording_id, 1)
    assert minted.status == 200

    # The employee's browser is in Japan (UTC+9): their pages show times there.
    page = sign_in(chromium, scene.broker.url, scene.employee, timezone_id=ZONE)
    page.click("text=Who viewed my recordings")
    played = f"a[href='/recordings/{scene.recording_id}']"
    watched = page.locator(f"table.receipts tbody tr:has({played})")
    mine = [r for r in watched.all_inner_texts() if scene.manager.email in r]
    assert mine, page.locator("table.receipts tbody tr").all_inner_texts()
    receipts = page.request.get(f"/api/v1/employees/{scene.employee.user_id}/receipts")
    assert receipts.status == 200
    assert {r["viewer"] for r in receipts.json()["receipts"]} == {scene.manager.email}
    # the view of segment 1 belongs to the manager's viewing that played the recording
    assert any(
        v["viewer"] == scene.manager.email and v["first_seq"] <= 1 <= v["last_seq"]
        for v in receipts.json()["viewings"]
    )

    # They watch their own recording: the same player, the same audited view URLs.
    page.goto("/")
    page.click(f"main a[href='/employees/{scene.employee.user_id}']")
    page.wait_for_url(day_page(scene.employee.user_id))
    assert f"times in {ZONE}" in page.content()
    page.click(f"a[href='/recordings/{scene.recording_id}']")
    page.wait_for_selector("#player")
    page.click("#play")
    wait_until(page, "document.getElementById('video').currentTime > 0.4")
    clock = page.locator("#clock")
    assert clock.inner_text().endswith(ZONE), clock.inner_text()
    assert (clock.get_attribute("title") or "").endswith("UTC")
    page.click("#play")
    page.goto("/receipts")
    rows = watched.all_inner_texts()
    assert any("your own view" in r for r in rows), rows
    assert any(scene.manager.email in r for r in rows), rows
    viewers = {r["viewer"] for r in page.request.get(
        f"/api/v1/employees/{scene.employee.user_id}/receipts").json()["receipts"]}
    assert viewers == {scene.manager.email, scene.employee.email}
    other = page.goto(f"/employees/{scene.other.user_id}")
    assert other is not None
    assert other.status == 404, "another person's day does not exist for them"

    page.goto("/")
    with page.expect_navigation():
        page.click("text=Sign out")
    assert page.url.endswith("/signin?signed_out=1"), page.url + page.content()
    assert page.locator("p.notice").inner_text() == "You are signed out."
    page.goto("/receipts")
    assert page.url.endswith("/signin"), "signed out: the pages send the browser to sign in"


def test_pages_carry_a_strict_policy_and_forms_carry_the_csrf_token(
    scene: Scene, manager_page: Page, s3_endpoint: S3Endpoint
) -> None:
    page = manager_page
    reply = page.goto(f"/recordings/{scene.recording_id}")
    assert reply is not None
    headers = reply.headers
    csp = headers["content-security-policy"]
    assert "unsafe-inline" not in csp
    assert "script-src 'self'" in csp
    assert "style-src 'self'" in csp
    assert f"media-src {s3_endpoint.url}" in csp
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"
    token = page.locator("form[action='/logout'] input[name=csrf_token]").get_attribute("value")
    assert token == csrf_of(page)

    forged = page.request.post("/logout", form={"csrf_token": "0" * 64})
    assert forged.status == 403
    page.goto("/")
    assert page.url == scene.broker.url + "/", "still signed in"
