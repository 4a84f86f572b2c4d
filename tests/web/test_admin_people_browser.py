"""An admin runs their people in headless Chromium: invites a manager through the page, the
manager opens the one-time link, sets a password and signs in enrolling TOTP; the admin
assigns an employee to the manager, who then sees that employee on their start page. The
last admin cannot deactivate themselves, a form without its CSRF token is refused, and the
people page is saved as docs/admin-people.png for the README.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from tests.identity.people import Person, make_person
from tests.support.api import PASSWORD, Tenant, make_tenant
from tests.support.broker import BrokerProcess
from tests.support.s3 import S3Endpoint
from tests.web.browser import code_for, day_page, off_thread, sign_in

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "admin-people.png"


@dataclass
class Scene:
    broker: BrokerProcess
    tenant: Tenant
    admin: Person
    employee: Person
    admin_page: Page


@pytest.fixture(scope="module")
def scene(broker: BrokerProcess, s3_endpoint: S3Endpoint, chromium: Browser) -> Scene:
    tenant = off_thread(make_tenant, broker, s3_endpoint)
    admin = off_thread(make_person, broker, tenant, "admin")
    employee = off_thread(make_person, broker, tenant, "employee")
    return Scene(broker, tenant, admin, employee, sign_in(chromium, broker.url, admin))


def row_of(page: Page, email: str) -> str:
    """The user id of the people list's row for `email`."""
    user_id = page.locator("table.people tr", has_text=email).get_attribute("data-user")
    assert user_id, email
    return user_id


def accept_and_enrol(chromium: Browser, scene: Scene, link: str, person: Person) -> Page:
    """The invited person's own browser: the link, the password twice, then the sign-in that
    enrols TOTP (QR code and key, a first code, the recovery codes)."""
    context = chromium.new_context(viewport={"width": 1100, "height": 820})
    page = context.new_page()
    page.goto(link)
    assert scene.tenant.name in page.inner_text("main")
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=password_again]", PASSWORD + " typo")
    page.click("button[type=submit]")
    assert "differ" in page.inner_text("p.error"), "the two passwords must match"
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=password_again]", PASSWORD)
    page.click("button[type=submit]")
    assert "Your password is set" in page.inner_text("h1")

    page.click("a.button:text-is('Sign in')")
    page.wait_for_url("**/signin?**")
    assert page.input_value("input[name=tenant]") == scene.tenant.name
    assert page.input_value("input[name=email]") == person.email
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    assert page.locator("svg.qr path").count() == 1, "the first sign-in shows the QR code"
    person.secret = page.locator("code.secret").inner_text().strip()
    page.fill("input[name=code]", code_for(person))
    page.click("button[type=submit]")
    assert page.locator("ol.codes li").count() == 10, "then the recovery codes, once"
    page.click("text=Continue")
    page.wait_for_url(scene.broker.url + "/")
    return page


def test_an_admin_invites_a_manager_who_joins_and_watches_an_assigned_employee(
    scene: Scene, chromium: Browser
) -> None:
    admin = scene.admin_page
    admin.click("nav >> text=People")
    admin.wait_for_url("**/admin/people")
    email = f"manager-{secrets.token_hex(4)}@example.test"
    admin.fill("form.invite input[name=email]", email)
    admin.select_option("form.invite select[name=role]", "manager")
    admin.click("form.invite button[type=submit]")
    link = admin.input_value("#invite-link")
    assert link.startswith(scene.broker.url + "/invite/bri_"), link
    assert "shown only this once" in admin.inner_text("section.invited")
    manager_id = row_of(admin, email)
    assert "invited" in admin.locator(f"tr[data-user='{manager_id}']").inner_text()
    admin.goto("/admin/people")
    assert admin.locator("#invite-link").count() == 0, "the link is shown once only"

    manager = Person(scene.tenant, manager_id, email, "manager")
    manager_page = accept_and_enrol(chromium, scene, link, manager)
    assert "Nobody is assigned to you yet" in manager_page.inner_text("main")
    again = manager_page.context.new_page()
    used = again.goto(link)
    assert used is not None
    assert used.status == 400
    assert "used already" in again.inner_text("p.error"), "the link works once"
    again.close()

    admin.goto("/admin/people")
    row = admin.locator(f"tr[data-user='{manager_id}']").inner_text()
    assert "active" in row
    assert "enrolled" in row
    admin.click(f"tr[data-user='{manager_id}'] >> text=Manage")
    admin.wait_for_url(f"**/admin/people/{manager_id}")
    admin.select_option("select[name=other]", scene.employee.user_id)
    admin.click("text=Assign employee")
    admin.wait_for_url(f"**/admin/people/{manager_id}?done=assigned")
    assert scene.employee.email in admin.inner_text("ul.assigned")

    manager_page.reload()
    manager_page.click(f"text={scene.employee.email}")
    manager_page.wait_for_url(day_page(scene.employee.user_id))

    admin.goto(f"/admin/people/{scene.employee.user_id}")
    assert email in admin.inner_text("ul.assigned"), "the employee's page lists the manager"


def test_the_last_admin_is_told_and_a_form_without_its_csrf_token_is_refused(
    scene: Scene,
) -> None:
    admin = scene.admin_page
    admin.goto("/admin/people")
    admin.click(f"tr[data-user='{scene.admin.user_id}'] >> button:has-text('Deactivate')")
    assert "last active admin" in admin.inner_text("p.error")
    refused = admin.request.post(
        f"/admin/people/{scene.employee.user_id}/deactivate", form={"return_to": "list"}
    )
    assert refused.status == 403
    admin.goto("/admin/people")
    assert "deactivated" not in admin.locator(
        f"tr[data-user='{scene.employee.user_id}']"
    ).inner_text()

    # one more invitation, not accepted yet, for the picture
    admin.fill("form.invite input[name=email]", f"newcomer-{secrets.token_hex(3)}@example.test")
    admin.click("form.invite button[type=submit]")
    assert admin.locator("#invite-link").count() == 1
    admin.goto("/admin/people")
    DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
    shot = admin.screenshot(type="png", full_page=True)
    assert len(shot) < 400_000
    DOCS_SCREENSHOT.write_bytes(shot)
