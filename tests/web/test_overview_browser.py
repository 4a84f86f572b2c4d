"""The start page, the audit log and the transparency page in headless Chromium.

A manager's start page shows who records now (a real heartbeat through the API), whose
workstation went silent (enrolled an hour ago, never heard from since) and the time
recorded today (real verified segments in moto); the admin's audit log shows the manager's
viewing of three segments as one row with names and links, and pages past its first page;
the employee reads who may watch them, their device, the policy and that viewing on their
transparency page; another employee sees none of it.

The screenshots are saved for the README (docs/start.png, docs/audit.png,
docs/transparency.png).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Page

from broker.services import Services
from tests.broker.test_overview import BEAT, named_person
from tests.identity.people import Client, Clock, Person, in_process
from tests.support.api import (
    Device,
    Operator,
    Tenant,
    enrollment_code,
    make_tenant,
    put_with_grant,
    random_segment,
    start_recording,
)
from tests.support.broker import BrokerProcess
from tests.support.s3 import S3Endpoint
from tests.web.browser import off_thread, sign_in

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGE_ROWS = 100  # broker.web.pages.audit.AUDIT_PAGE_ROWS


@dataclass
class Scene:
    broker: BrokerProcess
    api: Client
    tenant: Tenant
    admin: Person
    manager: Person
    ann: Person  # assigned, records now
    bo: Person  # assigned, their workstation went silent
    cy: Person  # not assigned, records too
    ann_device: Device
    recording_id: str  # Ann's, three verified segments of 20 s
    quiet_since: datetime


def enroll_named(scene_api: Client, broker: BrokerProcess, tenant: Tenant, who: Person,
                 name: str) -> Device:
    code = enrollment_code(broker, tenant, who.user_id)
    made = scene_api.call("POST", "/api/v1/devices/enroll", {"code": code, "name": name})
    assert made.status == 201, made.body
    body = made.body
    return Device(tenant, who.user_id, body["device_id"], body["access_token"],
                  body["refresh_token"])


def record(api: Client, device: Device, seconds: list[float]) -> str:
    recording_id = start_recording(api, device)
    start = datetime.now(UTC) - timedelta(seconds=sum(seconds) + 1)
    for seq, length in enumerate(seconds):
        segment = random_segment(2048)
        path = f"/api/v1/recordings/{recording_id}/segments/{seq}"
        declared = segment.declaration(started_at=start.isoformat(),
                                       duration_ms=int(length * 1000))
        grant = api.call("POST", path + "/upload", declared, token=device.access_token)
        assert grant.status == 200, grant.body
        assert put_with_grant(grant.body, segment.data).status == 200
        done = api.call("POST", path + "/complete", token=device.access_token)
        assert done.status == 200, done.body
        start += timedelta(seconds=length)
    return recording_id


def make_scene(broker: BrokerProcess, s3: S3Endpoint) -> Scene:
    from broker import admin as operator

    api = Client(broker.url)
    tenant = make_tenant(broker, s3)
    people = {
        key: named_person(broker, tenant, role, name)
        for key, role, name in (
            ("admin", "admin", "Ada Admin"), ("manager", "manager", "Max Manager"),
            ("ann", "employee", "Ann Example"), ("bo", "employee", "Bo Quiet"),
            ("cy", "employee", "Cy Other"),
        )
    }
    for key in ("ann", "bo"):
        Operator(broker).run(operator.assign, tenant=tenant.tenant_id,
                             manager=people["manager"].email, employee=people[key].email)
    ann_device = enroll_named(api, broker, tenant, people["ann"], "ann-desktop")
    cy_device = enroll_named(api, broker, tenant, people["cy"], "cy-laptop")
    quiet_since = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)

    async def quiet(services: Services) -> None:
        issued = await services.devices.issue_enrollment_code(
            tenant.tenant_id, people["bo"].user_id, actor="test"
        )
        await services.devices.enroll(issued.code, "bo-workstation")

    in_process(broker, Clock(quiet_since), quiet)
    for device in (ann_device, cy_device):
        beat = api.call("POST", "/api/v1/devices/heartbeat", {"state": "recording", **BEAT},
                        token=device.access_token)
        assert beat.status == 200, beat.body
    recording_id = record(api, ann_device, [20, 20, 20])
    record(api, cy_device, [5])
    return Scene(broker, api, tenant, people["admin"], people["manager"], people["ann"],
                 people["bo"], people["cy"], ann_device, recording_id, quiet_since)


@pytest.fixture(scope="module")
def scene(broker: BrokerProcess, s3_endpoint: S3Endpoint) -> Scene:
    return off_thread(make_scene, broker, s3_endpoint)


def row_of(page: Page, who: Person) -> str:
    return page.locator(f"table.people tr[data-user='{who.user_id}']").inner_text()


def fill_the_log(scene: Scene, entries: int) -> None:
    """Many audit entries, cheaply: an admin renaming a person again and again."""
    async def rename(services: Services) -> None:
        for n in range(entries):
            await services.people.set_name(
                scene.tenant.tenant_id, scene.cy.user_id, f"Cy Other {n % 2}",
                actor=f"user:{scene.admin.user_id}",
            )
        await services.people.set_name(
            scene.tenant.tenant_id, scene.cy.user_id, "Cy Other", actor="test"
        )

    off_thread(in_process, scene.broker, lambda: datetime.now(UTC), rename)


def test_the_start_page_the_audit_log_and_the_transparency_page(
    chromium: Browser, scene: Scene
) -> None:
    # The manager's start page: Ann records, Bo went silent, Cy is not theirs.
    manager = sign_in(chromium, scene.broker.url, scene.manager, timezone_id="Europe/Berlin")
    ann = row_of(manager, scene.ann)
    assert "Ann Example" in ann
    assert scene.ann.email in ann
    assert "recording now" in ann
    assert "1 min 0 s" in ann or "1 min 1 s" in ann, ann
    bo = row_of(manager, scene.bo)
    local = scene.quiet_since.astimezone(ZoneInfo("Europe/Berlin"))
    assert re.search(r"silent since (\d{4}-\d\d-\d\d )?" + local.strftime("%H:%M"), bo), bo
    assert manager.locator(f"tr[data-user='{scene.cy.user_id}']").count() == 0
    assert scene.cy.email not in manager.content()
    manager.screenshot(path=str(DOCS / "start.png"), full_page=True)

    # The manager watches three segments of Ann's recording: one viewing.
    csrf = manager.locator("nav#session").get_attribute("data-csrf") or ""
    fill_the_log(scene, PAGE_ROWS + 20)
    for seq in range(3):
        minted = manager.request.post(
            f"/api/v1/recordings/{scene.recording_id}/segments/{seq}/view",
            headers={"X-CSRF-Token": csrf},
        )
        assert minted.status == 200, minted.text()

    # The admin's audit log: that viewing is one row, with names and links; pages go on.
    admin = sign_in(chromium, scene.broker.url, scene.admin, timezone_id="Europe/Berlin")
    admin.click("nav >> text=Audit log")
    admin.wait_for_url("**/audit")
    viewing = admin.locator("table.audit tr.viewing").first
    text = viewing.inner_text()
    assert "Max Manager" in text
    assert "viewed" in text
    assert "recording of Ann Example" in text
    assert "segments 0–2 (3 view URLs)" in text
    assert "user:" not in text
    assert viewing.locator(f"a[href='/recordings/{scene.recording_id}']").count() == 1
    assert viewing.locator(f"a[href='/employees/{scene.manager.user_id}']").count() == 1
    assert admin.locator("table.audit tbody tr").count() == PAGE_ROWS
    admin.screenshot(path=str(DOCS / "audit.png"), full_page=False)
    first_rows = admin.locator("table.audit tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.seq)"
    )
    admin.click("text=Older entries")
    admin.wait_for_url(re.compile(r".*/audit\?before=\d+"))
    older = admin.locator("table.audit tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.seq)"
    )
    assert older
    assert int(older[0]) < int(first_rows[-1]), "the next page starts below the first"
    assert admin.locator("table.audit tr.viewing").count() == 0
    admin.select_option("select[name=employee]", scene.ann.user_id)
    admin.select_option("select[name=action]", "segment.view_url")
    admin.click("text=Filter")
    admin.wait_for_url(re.compile(r".*employee=.*"))
    assert admin.locator("table.audit tbody tr").count() == 1, "Ann's one viewing"

    # Ann's transparency page: who may watch her, her device, the policy, the viewing.
    changed = admin.request.patch(
        "/api/v1/admin/policy", data={"fps": 2, "idle_seconds": 300},
        headers={"X-CSRF-Token": admin.locator("nav#session").get_attribute("data-csrf") or ""},
    )
    assert changed.status == 200, changed.text()
    beat = scene.api.call("POST", "/api/v1/devices/heartbeat", {"state": "recording", **BEAT},
                          token=scene.ann_device.access_token)
    assert beat.status == 200, beat.body
    page = sign_in(chromium, scene.broker.url, scene.ann, timezone_id="Europe/Berlin")
    assert "recording now" in page.locator("section.mine").inner_text()
    page.click("text=What is recorded about me, and who may watch")
    page.wait_for_url("**/me")
    managers = page.locator("ul.managers").inner_text()
    assert "Max Manager" in managers
    assert "Ada Admin" in page.locator("ul.admins").inner_text()
    device = page.locator(f"tr[data-device='{scene.ann_device.device_id}']").inner_text()
    assert "ann-desktop" in device
    assert "recording now" in device
    assert page.locator("dd.fps").inner_text() == "2.0 fps"
    assert "300 s" in page.locator("dd.idle").inner_text()
    seen = page.locator("table.viewings tbody tr").all_inner_texts()
    assert len(seen) == 1, seen
    assert "Max Manager" in seen[0]
    assert "segments 0–2 (3 views)" in seen[0]
    assert page.locator(f"a[href='/employees/{scene.ann.user_id}']").count() >= 1
    page.screenshot(path=str(DOCS / "transparency.png"), full_page=True)
    page.goto("/receipts")
    rows = page.locator("table.receipts tbody tr").all_inner_texts()
    assert len(rows) == 1, rows
    assert "segments 0–2" in rows[0]

    # Cy sees only their own: no manager, no viewing, not Ann's day.
    cy = sign_in(chromium, scene.broker.url, scene.cy)
    cy.goto("/me")
    assert "No manager is assigned to you." in cy.locator("ul.managers").inner_text()
    assert "Nobody has viewed your recordings." in cy.locator("table.viewings").inner_text()
    assert "ann-desktop" not in cy.content()
    assert scene.ann.email not in cy.content()
    other = cy.goto(f"/employees/{scene.ann.user_id}")
    assert other is not None
    assert other.status == 404
    for context in (manager.context, admin.context, page.context, cy.context):
        context.close()
