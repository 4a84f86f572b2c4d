"""Who may open which page and read whose receipts, through HTTP on both databases.

Pages answer API clients (no `Accept: text/html`) with the API's JSON errors, so the same
refusals are checked here as for the JSON routes.
"""

from __future__ import annotations

import json

import pytest

from tests.identity.people import Org, audit_entries, make_org
from tests.support.broker import BrokerProcess
from tests.support.s3 import S3Endpoint
from tests.web.browser import off_thread


@pytest.fixture(scope="module")
def org(broker: BrokerProcess, s3_endpoint: S3Endpoint) -> Org:
    return off_thread(make_org, broker, s3_endpoint)


def test_a_manager_sees_only_assigned_employees_pages(org: Org) -> None:
    api, token = org.api, org.manager.access_token
    assert api.call("GET", f"/employees/{org.employee.user_id}", token=token).status == 200
    assert api.call("GET", f"/recordings/{org.recording_id}", token=token).status == 200
    for path in (f"/employees/{org.other_employee.user_id}",
                 f"/recordings/{org.other_recording_id}"):
        refused = api.call("GET", path, token=token)
        assert refused.status == 404, path
        assert refused.body["error"] == "not_found"
    minted = api.call(
        "POST", f"/api/v1/recordings/{org.other_recording_id}/segments/0/view", token=token
    )
    assert minted.status == 404
    assert "url" not in minted.body


def test_employees_read_their_own_receipts_and_nobody_elses(org: Org) -> None:
    api = org.api
    viewed = api.call(
        "POST", f"/api/v1/recordings/{org.recording_id}/segments/0/view",
        token=org.manager.access_token,
    )
    assert viewed.status == 200
    own = api.call(
        "GET", f"/api/v1/employees/{org.employee.user_id}/receipts",
        token=org.employee.access_token,
    )
    assert own.status == 200
    receipt = own.body["receipts"][0]
    assert (receipt["viewer"], receipt["viewer_role"]) == (org.manager.email, "manager")
    assert (receipt["recording_id"], receipt["seq"]) == (org.recording_id, 0)
    assert b"X-Amz-Signature" not in own.raw, "a receipt never holds the URL itself"

    by_admin = api.call(
        "GET", f"/api/v1/employees/{org.employee.user_id}/receipts", token=org.admin.access_token
    )
    assert by_admin.status == 200
    assert by_admin.body == own.body
    for who, token in (
        ("another employee", org.other_employee.access_token),
        ("the manager", org.manager.access_token),
        ("an admin of another tenant", org.outsider.access_token),
    ):
        reply = api.call(
            "GET", f"/api/v1/employees/{org.employee.user_id}/receipts", token=token
        )
        assert reply.status == 404, who
    page = api.call("GET", "/receipts", token=org.employee.access_token)
    assert page.status == 200
    assert org.manager.email.encode() in page.raw


def test_the_audit_page_and_export_are_for_admins_and_filter(
    org: Org, broker: BrokerProcess
) -> None:
    api = org.api
    for token in (org.manager.access_token, org.employee.access_token):
        assert api.call("GET", "/audit", token=token).status == 403
        assert api.call("GET", "/api/v1/admin/audit/export", token=token).status == 403
    page = api.call("GET", "/audit?action=auth.mfa_enroll", token=org.admin.access_token)
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert b"auth.mfa_enroll" in page.raw

    export = api.call("GET", "/api/v1/admin/audit/export", token=org.admin.access_token)
    assert export.status == 200
    assert export.headers["Content-Type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in export.raw.decode().splitlines()]
    stored = off_thread(audit_entries, broker, org.tenant.tenant_id)
    assert [e["seq"] for e in lines] == [e.seq for e in stored]
    assert [e["hash"] for e in lines] == [e.hash for e in stored]

    theirs = api.call(
        "GET", f"/api/v1/admin/audit/export?employee={org.other_employee.user_id}",
        token=org.admin.access_token,
    )
    about = [json.loads(line) for line in theirs.raw.decode().splitlines()]
    assert about
    assert all(org.other_employee.user_id in json.dumps(e) or
               org.other_recording_id in json.dumps(e) for e in about)
    assert not any(org.recording_id in json.dumps(e) for e in about)
