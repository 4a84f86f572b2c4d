"""The tenant admin runs the fleet in headless Chromium: sees a silent device from the start
page, creates an enrollment code, runs the command the page shows with the real agent on
Xvfb, watches the device record, revokes the silent one, and sets the recording policy.

The screenshots of the three pages are saved for the README (docs/admin-*.png).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from broker.services import Services
from tests.identity.people import Clock, Person, in_process, make_person
from tests.support.api import Tenant, make_tenant
from tests.support.broker import BrokerProcess
from tests.support.display import XDisplay
from tests.support.s3 import S3Endpoint
from tests.web.browser import off_thread, sign_in

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

DOCS = Path(__file__).resolve().parents[2] / "docs"
AGENT = Path(sys.executable).with_name("bucketreel-agent")


@dataclass
class Scene:
    broker: BrokerProcess
    tenant: Tenant
    admin: Person
    employee: Person
    quiet_device: str  # enrolled an hour ago, never heard from since: silent


@pytest.fixture(scope="module")
def scene(broker: BrokerProcess, s3_endpoint: S3Endpoint) -> Scene:
    tenant = off_thread(make_tenant, broker, s3_endpoint)
    admin, employee = (off_thread(make_person, broker, tenant, r) for r in ("admin", "employee"))

    async def quiet(services: Services) -> str:
        issued = await services.devices.issue_enrollment_code(
            tenant.tenant_id, employee.user_id, actor="test"
        )
        return (await services.devices.enroll(issued.code, "reception-pc")).device_id

    an_hour_ago = Clock(datetime.now(UTC) - timedelta(hours=1))
    quiet_device = off_thread(in_process, broker, an_hour_ago, quiet)
    return Scene(broker, tenant, admin, employee, quiet_device)


def agent_env(home: Path, display: str) -> dict[str, str]:
    return {**os.environ, "BUCKETREEL_AGENT_HOME": str(home), "DISPLAY": display}


def row(page: Page, device_id: str) -> str:
    return page.locator(f"#device-{device_id}").inner_text()


def wait_for_row(page: Page, device_id: str, *wanted: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        page.goto("/admin/devices")
        shown = row(page, device_id) if page.locator(f"#device-{device_id}").count() else ""
        if all(w in shown for w in wanted):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"device row {shown!r} never showed {wanted}")
        page.wait_for_timeout(500)


def test_the_admin_enrolls_watches_and_sets_the_policy_of_the_fleet(
    chromium: Browser, scene: Scene, xvfb: XDisplay, tmp_path: Path
) -> None:
    page = sign_in(chromium, scene.broker.url, scene.admin)

    glance = page.locator("section.fleet")
    assert "1 device silent now" in glance.inner_text()
    page.click("section.fleet >> text=reception-pc")
    page.wait_for_url(f"**/admin/devices#device-{scene.quiet_device}")
    quiet = page.locator(f"#device-{scene.quiet_device}")
    assert "silent" in (quiet.get_attribute("class") or "")
    assert quiet.locator("td.state.warning").inner_text() == "silent"

    # A code for two workstations, made on the page; the command it shows is run as it is.
    page.goto("/admin/enrollment")
    page.select_option("select[name=user_id]", scene.employee.user_id)
    page.fill("input[name=max_uses]", "2")
    page.fill("input[name=hours]", "48")
    page.fill("input[name=label]", "design team desktops")
    page.click("text=Create code")
    code = page.locator("#code").inner_text().strip()
    command = page.locator("#command").inner_text().strip()
    assert code.startswith("bre_")
    assert command == f"bucketreel-agent enroll --broker {scene.broker.url} --code {code}"
    listed = page.locator("table.codes tr.code").first.inner_text()
    assert "design team desktops" in listed
    assert "0 of 2" in listed
    page.screenshot(path=str(DOCS / "admin-enrollment.png"), full_page=True)
    page.goto("/admin/enrollment")
    assert code not in page.content(), "the code is shown once"

    home = tmp_path / "agent"
    argv = shlex.split(command)
    assert argv[0] == "bucketreel-agent"
    env = agent_env(home, xvfb.display)
    enrolled = subprocess.run(
        [str(AGENT), *argv[1:]], env=env, capture_output=True, text=True, timeout=120,
        check=False, stdin=subprocess.DEVNULL,
    )
    assert enrolled.returncode == 0, enrolled.stderr
    device_id = re.search(r"enrolled: device (\S+)", enrolled.stdout)[1]  # type: ignore[index]

    recorder = subprocess.Popen(
        [str(AGENT), "run", "--fps", "2", "--segment-seconds", "1", "--duration", "12",
         "--heartbeat-seconds", "1"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_row(page, device_id, "recording", "segment ")
        shown = row(page, device_id)
        assert scene.employee.email in shown
        assert re.search(r"\d+\.\d+", shown), "the agent's version"
        assert "none" in shown, "no spool backlog"
        assert "silent" not in (page.locator(f"#device-{device_id}").get_attribute("class") or "")
        assert page.locator("p.warning").inner_text().startswith("1 device silent")
        page.screenshot(path=str(DOCS / "admin-devices.png"), full_page=True)
    finally:
        _, err = recorder.communicate(timeout=90)
    assert recorder.returncode == 0, err

    page.goto("/admin/enrollment")
    assert "1 of 2" in page.locator("table.codes tr.code").first.inner_text()

    page.goto("/admin/devices")
    page.locator(f"#device-{scene.quiet_device} button:has-text('Revoke')").click()
    page.wait_for_url("**/admin/devices")
    assert page.locator(f"#device-{scene.quiet_device} td.state").inner_text() == "revoked"
    assert page.locator("p.warning").count() == 0, "nothing is silent any more"

    # The policy: saved, with what it costs.
    page.goto("/admin/policy")
    assert "27 MB per recorded hour per person" in page.inner_text("form.card")
    page.fill("input[name=fps]", "0.5")
    page.fill("input[name=segment_seconds]", "120")
    page.fill("input[name=idle_seconds]", "600")
    page.click("text=Save policy")
    assert page.locator("p.saved").is_visible()
    assert "14 MB per recorded hour per person" in page.inner_text("form.card")
    assert page.input_value("input[name=fps]") == "0.5"
    page.screenshot(path=str(DOCS / "admin-policy.png"), full_page=True)

    # A form without the session's CSRF token is refused, and saves nothing.
    page.evaluate("document.querySelector('form.card input[name=csrf_token]').remove()")
    page.fill("input[name=fps]", "5")
    page.click("text=Save policy")
    assert "CSRF" in page.inner_text("main") or "X-CSRF-Token" in page.inner_text("main")
    page.goto("/admin/policy")
    assert page.input_value("input[name=fps]") == "0.5"
    page.context.close()
