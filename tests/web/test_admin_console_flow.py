"""The tenant admin's whole day in headless Chromium, with the real agent on Xvfb.

An admin sets up the bucket on the Storage page with a key of moto's IAM (held by the strict
SigV4 gate), invites a manager and an employee, who accept their links (password, then TOTP);
assigns the employee to the manager; creates an enrollment code, with which the real agent
enrolls and records; the device shows recording. Then the customer deactivates the key in
IAM: every admin page says "access revoked" while the agent keeps its segments in its spool;
the admin pastes a new key, and the spool drains — every segment of the recording arrives,
verified, none missing. The manager watches it; the employee watches their own recording and
sees both views in their receipts.

The pieces are each tested on their own (tests/web/test_admin_*_browser.py, tests/rotation);
this is them together, as one organisation would live them.
"""

from __future__ import annotations

import re
import secrets
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from broker import admin
from broker.storage import policy
from tests.conftest import sqlite_broker
from tests.identity.people import Person, make_person
from tests.storage.conftest import iam_s3 as iam_s3
from tests.storage.iam import IamMoto
from tests.support.api import Operator, Tenant
from tests.support.broker import BrokerProcess
from tests.support.display import XDisplay
from tests.support.s3gate import AccessKey, S3Gate
from tests.web.browser import off_thread, sign_in, wait_until
from tests.web.test_admin_fleet_browser import AGENT, agent_env, wait_for_row
from tests.web.test_admin_people_browser import accept_and_enrol, row_of
from tests.web.test_admin_storage_browser import BANNER, PREFIX, IamUser, fill_storage

INTERVAL = 2  # BUCKETREEL_STORAGE_CHECK_INTERVAL of this module's broker


@pytest.fixture(scope="module")
def console_broker(session_tmp: Path) -> Iterator[BrokerProcess]:
    with ExitStack() as stack:
        yield sqlite_broker(
            stack, session_tmp, "admin-console-flow", "the admin console broker",
            {"BUCKETREEL_STORAGE_CHECK_INTERVAL": str(INTERVAL)},
        )


@dataclass
class Place:
    """What `accept_and_enrol` needs to know of the organisation."""

    broker: BrokerProcess
    tenant: Tenant


def invite(page: Page, role: str) -> tuple[str, str, str]:
    """(user id, email, one-time link) of a person invited on the People page."""
    email = f"{role}-{secrets.token_hex(4)}@example.test"
    page.goto("/admin/people")
    page.fill("form.invite input[name=email]", email)
    page.select_option("form.invite select[name=role]", role)
    page.click("form.invite button[type=submit]")
    return row_of(page, email), email, page.input_value("#invite-link")


def wait_for_banner(page: Page, shown: bool, within: float) -> float:
    """Reload the admin's start page until the storage banner is (or is not) on it."""
    start = time.monotonic()
    while True:
        page.goto("/")
        if (BANNER in page.content()) == shown:
            return time.monotonic() - start
        assert time.monotonic() - start < within, f"banner {'never' if shown else 'still'} shown"
        page.wait_for_timeout(500)


def play(page: Page, base_url: str, recording_id: str) -> None:
    page.goto(f"{base_url}/recordings/{recording_id}")
    page.wait_for_selector("#player")
    page.click("#play")
    wait_until(page, "document.getElementById('video').currentTime > 0.3")
    page.click("#play")


def test_an_admin_runs_the_organisation_through_a_key_rotation(
    console_broker: BrokerProcess, gate: S3Gate, gate_setup_key: AccessKey, iam_s3: IamMoto,
    chromium: Browser, xvfb: XDisplay, tmp_path: Path,
) -> None:
    broker = console_broker
    name = f"console-{secrets.token_hex(3)}"
    tenant_id = off_thread(Operator(broker).run, admin.create_tenant, name=name)["tenant_id"]
    bucket = gate.endpoint(gate_setup_key).create_bucket()
    tenant = Tenant(tenant_id, name, bucket, PREFIX)
    boss = off_thread(make_person, broker, tenant, "admin")  # the operator's first admin
    made = iam_s3.user(policy.identity_policy(bucket, PREFIX))
    iam_user = IamUser(iam_s3, gate, made.name)
    old_key = iam_user.hold(made.access_key_id, made.secret_access_key)

    page = sign_in(chromium, broker.url, boss)
    page.goto("/admin/storage")
    fill_storage(page, gate, bucket, old_key, accept=True)  # moto enforces no IAM: accepted
    page.wait_for_url("**/admin/storage?done=saved")
    assert "Access works" in page.content()

    # People: a manager and an employee join through their links; one watches the other.
    place = Place(broker, tenant)
    manager_id, manager_email, link = invite(page, "manager")
    manager = Person(tenant, manager_id, manager_email, "manager")
    manager_page = accept_and_enrol(chromium, place, link, manager)  # type: ignore[arg-type]
    employee_id, employee_email, link = invite(page, "employee")
    employee = Person(tenant, employee_id, employee_email, "employee")
    employee_page = accept_and_enrol(chromium, place, link, employee)  # type: ignore[arg-type]
    page.goto(f"/admin/people/{manager_id}")
    page.select_option("select[name=other]", employee_id)
    page.click("text=Assign employee")
    page.wait_for_url(f"**/admin/people/{manager_id}?done=assigned")

    # Fleet: a code made on the page; the real agent enrolls with the command shown.
    page.goto("/admin/enrollment")
    page.select_option("select[name=user_id]", employee_id)
    page.fill("input[name=max_uses]", "1")
    page.fill("input[name=hours]", "1")
    page.click("text=Create code")
    argv = shlex.split(page.locator("#command").inner_text().strip())
    env = agent_env(tmp_path / "agent", xvfb.display)
    enrolled = subprocess.run(
        [str(AGENT), *argv[1:]], env=env, capture_output=True, text=True, timeout=120,
        check=False, stdin=subprocess.DEVNULL,
    )
    assert enrolled.returncode == 0, enrolled.stderr
    device_id = re.search(r"enrolled: device (\S+)", enrolled.stdout)[1]  # type: ignore[index]
    log = tmp_path / "agent.log"
    with log.open("w") as sink:
        recorder = subprocess.Popen(
            [str(AGENT), "run", "--fps", "2", "--segment-seconds", "1",
             "--heartbeat-seconds", "1", "--duration", "600"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=sink,
        )
    try:
        wait_for_row(page, device_id, "recording", "segment ")  # healthy, uploading

        # The customer deactivates the key: the admin pages say so, the agent spools.
        iam_user.deactivate(old_key)
        assert wait_for_banner(page, True, within=60) < 60
        spooling = time.monotonic()
        while "keeping it in the encrypted spool" not in log.read_text():
            assert time.monotonic() - spooling < 60, log.read_text()[-2000:]
            time.sleep(0.5)
        time.sleep(3)  # a few more segments into the spool

        # The admin pastes a new key: the broker switches, the spool drains.
        new_key = iam_user.new_key()
        page.goto("/admin/storage")
        page.fill("input[name=access_key_id]", new_key.key_id)
        page.fill("input[name=secret_access_key]", new_key.secret)
        page.check("input[name=accept_risk]")
        page.click("text=Check and save")
        page.wait_for_url("**/admin/storage?done=saved")
        wait_for_banner(page, False, within=10)
        time.sleep(3)  # and a few segments with the new key
    finally:
        recorder.send_signal(signal.SIGTERM)
        code = recorder.wait(120)
    assert code == 0, log.read_text()[-3000:]

    recordings = page.request.get(f"/api/v1/employees/{employee_id}/recordings").json()
    (recording,) = recordings["recordings"]
    info: dict[str, Any] = page.request.get(
        f"/api/v1/recordings/{recording['recording_id']}"
    ).json()
    seqs = [s["seq"] for s in info["segments"]]
    assert seqs == list(range(len(seqs))), "every segment, once, in order"
    assert len(seqs) >= 8, seqs
    assert {s["state"] for s in info["segments"]} == {"verified"}, info["segments"]
    assert info["state"] == "finished"
    assert "went through the spool" in log.read_text(), "some segments waited in the spool"
    refused = [e for e in gate.log.entries(old_key.key_id) if e.status == 403]
    assert refused, "uploads with the old key were refused while it was inactive"
    assert gate.log.entries(new_key.key_id), "and the spool drained with the new one"

    # The manager watches; the employee watches their own and sees both views.
    play(manager_page, broker.url, recording["recording_id"])
    play(employee_page, broker.url, recording["recording_id"])
    employee_page.goto(f"{broker.url}/receipts")
    rows = employee_page.locator("table.receipts tbody tr").all_inner_texts()
    assert any(manager_email in r for r in rows), rows
    assert any("your own view" in r for r in rows), rows
    for other in (page, manager_page, employee_page):
        other.context.close()
