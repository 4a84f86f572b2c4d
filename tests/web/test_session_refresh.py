"""An open page keeps its browser session alive (`broker/web/static/session.js`), in headless
Chromium, on a broker whose access tokens live 5 s (allowed in development mode only).

Two tabs of one browser share one session: they refresh it in turn, never replaying a refresh
token (which would end the session). Without the refresh cookie the page goes to /signin once
the access cookie runs out, and so does a page opened then.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Response

from broker import admin
from tests.conftest import sqlite_broker
from tests.identity.people import Client, Person, audit_entries, make_person, verified_recording
from tests.support.api import Operator, Tenant, enroll, make_tenant
from tests.support.broker import BrokerProcess
from tests.support.s3 import S3Endpoint
from tests.web.browser import off_thread, sign_in

TTL = 5
REFRESH = "/api/v1/auth/refresh"


@pytest.fixture(scope="module")
def quick(session_tmp: Path) -> Iterator[BrokerProcess]:
    with ExitStack() as stack:
        yield sqlite_broker(
            stack, session_tmp, "quick-sessions", "the short-session broker",
            {"BUCKETREEL_DEV_MODE": "1", "BUCKETREEL_ACCESS_TOKEN_TTL": str(TTL)},
        )


@dataclass
class Scene:
    broker: BrokerProcess
    tenant: Tenant
    manager: Person
    recording_id: str


@pytest.fixture(scope="module")
def scene(quick: BrokerProcess, s3_endpoint: S3Endpoint) -> Scene:
    tenant = off_thread(make_tenant, quick, s3_endpoint)
    manager = off_thread(make_person, quick, tenant, "manager")
    employee = off_thread(make_person, quick, tenant, "employee")
    off_thread(
        Operator(quick).run, admin.assign, tenant=tenant.tenant_id, manager=manager.email,
        employee=employee.email,
    )
    api = Client(quick.url)
    device = off_thread(enroll, api, quick, tenant, employee.user_id)
    return Scene(quick, tenant, manager, verified_recording(api, device))


def test_an_open_page_outlives_the_access_token_and_goes_to_signin_without_refresh(
    scene: Scene, chromium: Browser
) -> None:
    page = sign_in(chromium, scene.broker.url, scene.manager)
    signed_in = time.monotonic()
    context = page.context
    refreshes: list[Response] = []
    context.on("response", lambda r: refreshes.append(r) if r.url.endswith(REFRESH) else None)
    page.goto(f"/recordings/{scene.recording_id}")
    other_tab = context.new_page()
    other_tab.goto("/")  # a second tab of the same browser: the same session

    page.wait_for_timeout((signed_in + 2 * TTL + 1 - time.monotonic()) * 1000)

    assert len(refreshes) >= 2, "the open pages refreshed the session"
    assert [r.status for r in refreshes] == [200] * len(refreshes)
    with page.expect_response(lambda r: r.url.endswith("/view")) as minted:
        page.click("#play")
    assert minted.value.status == 200, "the player still mints view URLs after 2 x the TTL"
    assert other_tab.goto("/receipts") is not None
    assert other_tab.url.endswith("/receipts"), "and pages still open"
    reuse = [e for e in off_thread(audit_entries, scene.broker, scene.tenant.tenant_id)
             if e.action == "user.refresh_reuse"]
    assert reuse == [], "the tabs took turns: no refresh token was presented twice"
    cookie = next(c for c in context.cookies() if c["name"] == "bucketreel_refresh")
    assert (cookie["path"], cookie["httpOnly"], cookie["sameSite"]) == (REFRESH, True, "Strict")
    assert cookie["secure"] is False, "development mode on http://127.0.0.1 only"

    context.clear_cookies(name="bucketreel_refresh")
    page.wait_for_url("**/signin", timeout=(TTL + 3) * 1000)
    other_tab.wait_for_url("**/signin", timeout=(TTL + 3) * 1000)
    names = lambda: {c["name"] for c in context.cookies()}  # noqa: E731
    deadline = time.monotonic() + TTL + 2
    while "bucketreel_session" in names() and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    assert "bucketreel_session" not in names(), "the access cookie ran out"
    page.goto("/")
    assert page.url.endswith("/signin"), "a page opened after that asks to sign in again"
    context.close()
