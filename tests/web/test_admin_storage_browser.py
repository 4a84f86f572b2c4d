"""The rotation flow in headless Chromium: a tenant admin sets up storage on the Storage page,
the customer deactivates the broker's key in IAM, every admin page shows "access revoked"
within the broker's check interval, the admin pastes a new key, and uploads work again.

The keys are moto's IAM access keys (an IAM user with the identity policy the page shows). S3
is the strict SigV4 gate in front of moto (tests/support/s3gate.py): moto's S3 does not check
whether a key is active, so the gate holds each IAM key and is told its status from IAM
(`IamUser.sync`) — the admin's act is the IAM API call itself. moto's S3 behind the gate
enforces no IAM policy, so the self-check names every right too many and the admin ticks
"save anyway" (as every gate test does with `accept_risk`).

That an agent's spooled segments all arrive after the rotation is tests/rotation's: the page's
form calls the same `StorageAccess.save` as the CLI and the API those tests use.
"""

from __future__ import annotations

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
from tests.identity.people import Client, audit_entries, make_person
from tests.storage.conftest import iam_s3 as iam_s3
from tests.storage.factory import BROKER_KEY_LABEL
from tests.storage.iam import IamMoto
from tests.support.api import (
    Operator,
    Tenant,
    enroll,
    put_with_grant,
    random_segment,
    start_recording,
)
from tests.support.broker import BrokerProcess
from tests.support.s3gate import AccessKey, S3Gate
from tests.web.browser import off_thread, sign_in

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "admin-storage.png"
INTERVAL = 3  # BUCKETREEL_STORAGE_CHECK_INTERVAL of this module's broker
BANNER = "Storage access revoked since"
PREFIX = "rec"


@pytest.fixture(scope="module")
def watching(session_tmp: Path) -> Iterator[BrokerProcess]:
    with ExitStack() as stack:
        yield sqlite_broker(
            stack, session_tmp, "storage-watch-browser", "the storage-watch broker",
            {"BUCKETREEL_STORAGE_CHECK_INTERVAL": str(INTERVAL)},
        )


@dataclass
class IamUser:
    """The customer's IAM user for the broker, in moto's IAM; its keys held by the gate."""

    iam: IamMoto
    gate: S3Gate
    name: str

    def hold(self, key_id: str, secret: str) -> AccessKey:
        return self.gate.keys.add(key_id, secret, label=BROKER_KEY_LABEL)

    def new_key(self) -> AccessKey:
        """A second key for the user (IAM allows two), as the admin makes one to rotate."""
        made = self.iam.client("iam").create_access_key(UserName=self.name)["AccessKey"]
        return self.hold(made["AccessKeyId"], made["SecretAccessKey"])

    def deactivate(self, key: AccessKey) -> None:
        self.iam.client("iam").update_access_key(
            UserName=self.name, AccessKeyId=key.key_id, Status="Inactive"
        )
        self.sync()

    def sync(self) -> None:
        """The gate accepts exactly the keys IAM says are active."""
        listed = self.iam.client("iam").list_access_keys(UserName=self.name)
        for meta in listed["AccessKeyMetadata"]:
            if self.gate.keys.get(meta["AccessKeyId"]) is not None:
                if meta["Status"] == "Active":
                    self.gate.keys.activate(meta["AccessKeyId"])
                else:
                    self.gate.keys.deactivate(meta["AccessKeyId"])


def fill_storage(page: Page, gate: S3Gate, bucket: str, key: AccessKey, *,
                 accept: bool) -> None:
    page.fill("input[name=bucket]", bucket)
    page.fill("input[name=region]", gate.region)
    page.fill("input[name=prefix]", PREFIX)
    page.fill("input[name=endpoint_url]", gate.url)
    page.check("input[name=mode][value=keys]")
    page.fill("input[name=access_key_id]", key.key_id)
    page.fill("input[name=secret_access_key]", key.secret)
    if accept:
        page.check("input[name=accept_risk]")
    page.click("text=Check and save")


def upload_one(broker: BrokerProcess, tenant: Tenant) -> dict[str, Any]:
    """A device's grant and PUT through the gate, then the broker's verification."""
    api = Client(broker.url)
    device = off_thread(enroll, api, broker, tenant)
    recording = start_recording(api, device)
    segment = random_segment(4096)
    path = f"/api/v1/recordings/{recording}/segments/0"
    grant = api.call("POST", f"{path}/upload", segment.declaration(), token=device.access_token)
    assert grant.status == 200, grant.body
    assert put_with_grant(grant.body, segment.data).status == 200
    done = api.call("POST", f"{path}/complete", token=device.access_token)
    assert (done.status, done.body) == (200, {"state": "verified"})
    body: dict[str, Any] = grant.body
    return body


def test_an_admin_rotates_the_key_on_the_storage_page(
    watching: BrokerProcess, gate: S3Gate, gate_setup_key: AccessKey, iam_s3: IamMoto,
    chromium: Browser,
) -> None:
    broker = watching
    name = "tenant-storage-page"
    tenant_id = off_thread(Operator(broker).run, admin.create_tenant, name=name)["tenant_id"]
    bucket = gate.endpoint(gate_setup_key).create_bucket()
    tenant = Tenant(tenant_id, name, bucket, PREFIX)
    boss = off_thread(make_person, broker, tenant, "admin")
    made = iam_s3.user(policy.identity_policy(bucket, PREFIX))  # an IAM user and its key
    user = IamUser(iam_s3, gate, made.name)
    old_key = user.hold(made.access_key_id, made.secret_access_key)

    page = sign_in(chromium, broker.url, boss)
    page.click("nav >> text=Storage")
    page.wait_for_url("**/admin/storage")
    assert "No bucket is set up yet" in page.content()
    page.fill("form.filters input[name=bucket]", bucket)
    page.fill("form.filters input[name=prefix]", PREFIX)
    page.click("text=Show the policies")
    assert f"arn:aws:s3:::{bucket}/{PREFIX}/*" in page.locator("pre#identity-policy").inner_text()
    assert '"s3:ListBucket"' in page.locator("pre#vault-policy").inner_text(), "the vault's"

    # without accepting the risk: refused, the findings in plain words, nothing saved
    fill_storage(page, gate, bucket, old_key, accept=False)
    assert "The self-check failed: nothing was saved." in page.content()
    assert page.locator(".error-box ul.findings li").count() >= 3
    assert page.input_value("input[name=bucket]") == bucket
    assert page.input_value("input[name=access_key_id]") == old_key.key_id
    assert page.input_value("input[name=secret_access_key]") == ""
    assert "No bucket is set up yet" in page.content()
    assert f"arn:aws:s3:::{bucket}/{PREFIX}/*" in page.locator("pre#identity-policy").inner_text()

    fill_storage(page, gate, bucket, old_key, accept=True)
    page.wait_for_url("**/admin/storage?done=saved")
    html = page.content()
    assert "Access works" in html
    for shown in (bucket, gate.region, gate.url, old_key.key_id):
        assert shown in page.locator("section.storage-config").inner_text(), shown
    external_id = page.locator("section.storage-config code.external-id").inner_text()
    assert external_id.startswith("bucketreel-")
    assert external_id in page.locator("pre#trust-policy").inner_text()
    for pre in ("identity-policy", "bucket-policy", "trust-policy"):
        assert page.locator(f"pre#{pre}").inner_text().startswith("{")
    assert page.locator("section.storage-check table.probes tbody tr").count() == 5
    assert old_key.secret not in html
    assert page.input_value("input[name=secret_access_key]") == ""
    assert BANNER not in html
    first = upload_one(broker, tenant)
    assert f"X-Amz-Credential={old_key.key_id}" in first["url"]

    # the customer deactivates the key in IAM; no agent uploads meanwhile
    user.deactivate(old_key)
    cut = time.monotonic()
    page.goto("/")
    while BANNER not in page.content():
        assert time.monotonic() - cut < 5 * INTERVAL + 15, "no banner on the admin pages"
        page.wait_for_timeout(500)
        page.reload()
    seen_after = time.monotonic() - cut
    assert seen_after < 60
    banner = page.locator("p.banner.revoked")
    assert "open Storage to hand the broker a new key" in banner.inner_text()
    page.goto("/audit")
    assert BANNER in page.content()
    banner = page.locator("p.banner.revoked")
    banner.locator("text=open Storage").click()
    page.wait_for_url("**/admin/storage")
    assert "Access revoked since" in page.locator("section.storage-access").inner_text()
    page.screenshot(path=str(DOCS_SCREENSHOT), type="png")

    # the admin makes a new key and pastes it; the form keeps bucket, region, prefix, endpoint
    new_key = user.new_key()
    assert page.input_value("input[name=bucket]") == bucket
    page.fill("input[name=access_key_id]", new_key.key_id)
    page.fill("input[name=secret_access_key]", new_key.secret)
    page.check("input[name=accept_risk]")
    page.click("text=Check and save")
    page.wait_for_url("**/admin/storage?done=saved")
    assert BANNER not in page.content()
    assert "Access works" in page.content()
    assert new_key.key_id in page.locator("section.storage-config").inner_text()
    assert "(version 2)" in page.locator("section.storage-config").inner_text()
    assert new_key.secret not in page.content()
    page.goto("/")
    assert BANNER not in page.content()

    # uploads work again, signed with the new key, through the strict gate
    second = upload_one(broker, tenant)
    assert f"X-Amz-Credential={new_key.key_id}" in second["url"]
    time.sleep(2 * INTERVAL)  # the watch's rounds with the new key keep the state
    page.reload()
    assert BANNER not in page.content()
    actions = [e.action for e in off_thread(audit_entries, broker, tenant_id)]
    assert actions.count("storage.access_revoked") == 1
    assert actions.count("storage.access_restored") == 1
    assert actions.count("storage.set") == 2
    refused = [e for e in gate.log.entries(old_key.key_id) if e.status == 403]
    assert refused
    assert all(e.error == "InvalidAccessKeyId" for e in refused)
