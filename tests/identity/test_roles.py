"""Roles: who may see whose recordings, view URLs, assignments, and device revocation."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import urllib3

from broker.identity import Role
from broker.web.routes import ROUTES
from tests.identity.people import Org, make_person, sign_in, verified_recording
from tests.support.api import enroll, now_iso, random_segment, start_recording
from tests.support.broker import BrokerProcess


def view(org: Org, token: str, recording_id: str, seq: int = 0) -> tuple[int, Any]:
    reply = org.api.call(
        "POST", f"/api/v1/recordings/{recording_id}/segments/{seq}/view", token=token
    )
    return reply.status, reply.body


def test_a_manager_sees_assigned_employees_only(org: Org) -> None:
    token = org.manager.access_token
    listed = org.api.call("GET", "/api/v1/employees", token=token)
    theirs = org.api.call("GET", f"/api/v1/employees/{org.other_employee.user_id}/recordings",
                          token=token)
    mine = org.api.call("GET", f"/api/v1/employees/{org.employee.user_id}/recordings",
                        token=token)

    assert [e["user_id"] for e in listed.body["employees"]] == [org.employee.user_id]
    assert theirs.status == 404
    assert [r["recording_id"] for r in mine.body["recordings"]] == [org.recording_id]
    assert org.api.call("GET", f"/api/v1/recordings/{org.other_recording_id}",
                        token=token).status == 404
    assert view(org, token, org.other_recording_id)[0] == 404


def test_a_manager_mints_a_short_view_url_that_plays(org: Org) -> None:
    status, body = view(org, org.manager.access_token, org.recording_id)
    assert status == 200, body
    assert "X-Amz-Signature=" in body["url"]
    query = parse_qs(urlsplit(body["url"]).query)
    assert 0 < int(query["X-Amz-Expires"][0]) <= 120
    got = urllib3.PoolManager(retries=False).request("GET", body["url"])
    assert got.status == 200
    assert len(got.data) == 4096
    info = org.api.call("GET", f"/api/v1/recordings/{org.recording_id}",
                        token=org.manager.access_token)
    assert info.status == 200
    assert info.body["segments"][0]["state"] == "verified"


def test_an_employee_watches_their_own_recordings_and_nobody_elses(org: Org) -> None:
    token = org.employee.access_token
    assert org.api.call("GET", "/api/v1/employees", token=token).body == {"employees": []}
    status, minted = view(org, token, org.recording_id)  # the employee's own recording
    assert status == 200, minted
    assert "X-Amz-Signature" in minted["url"]
    mine = org.api.call("GET", f"/api/v1/employees/{org.employee.user_id}/recordings",
                        token=token)
    assert [r["recording_id"] for r in mine.body["recordings"]] == [org.recording_id]
    for page in (f"/employees/{org.employee.user_id}", f"/recordings/{org.recording_id}"):
        assert org.api.call("GET", page, token=token).status == 200, page
    # Another person's recording does not exist for them, on every path.
    assert view(org, token, org.other_recording_id)[0] == 404
    assert org.api.call("GET", f"/api/v1/recordings/{org.other_recording_id}",
                        token=token).status == 404
    for path in (f"/api/v1/employees/{org.other_employee.user_id}/recordings",
                 f"/employees/{org.other_employee.user_id}",
                 f"/recordings/{org.other_recording_id}"):
        assert org.api.call("GET", path, token=token).status == 404, path
    receipts = org.api.call("GET", f"/api/v1/employees/{org.employee.user_id}/receipts",
                            token=token).body["receipts"]
    theirs = [r for r in receipts if r["own"]]
    assert theirs, receipts
    assert theirs[0]["viewer"] == org.employee.email
    page = org.api.call("GET", "/receipts", token=token)
    assert b"your own view" in page.raw


def test_a_manager_watches_their_own_recordings_too(
    org: Org, broker: BrokerProcess
) -> None:
    device = enroll(org.api, broker, org.tenant, org.manager.user_id)
    recording_id = verified_recording(org.api, device)
    assert view(org, org.manager.access_token, recording_id)[0] == 200
    listed = org.api.call("GET", "/api/v1/employees", token=org.manager.access_token)
    assert org.manager.user_id not in {e["user_id"] for e in listed.body["employees"]}
    assert view(org, org.employee.access_token, recording_id)[0] == 404


def test_an_admin_sees_the_whole_tenant_and_nothing_outside(org: Org) -> None:
    listed = org.api.call("GET", "/api/v1/employees", token=org.admin.access_token)
    ids = {e["user_id"] for e in listed.body["employees"]}
    assert {org.employee.user_id, org.other_employee.user_id} <= ids
    assert view(org, org.admin.access_token, org.other_recording_id)[0] == 200
    assert view(org, org.outsider.access_token, org.recording_id)[0] == 404
    assert org.api.call("GET", f"/api/v1/employees/{org.employee.user_id}/recordings",
                        token=org.outsider.access_token).status == 404


def test_devices_never_get_the_view_route(org: Org) -> None:
    assert view(org, org.device.access_token, org.recording_id)[0] == 401


def test_assignment_by_api_and_cli(org: Org, broker: BrokerProcess) -> None:
    manager = sign_in(org.api, make_person(broker, org.tenant, Role.MANAGER))
    employee = make_person(broker, org.tenant)
    made = org.api.call(
        "POST", "/api/v1/admin/assignments",
        {"manager_id": manager.user_id, "employee_id": org.other_employee.user_id},
        token=org.admin.access_token,
    )
    by_manager = org.api.call(
        "POST", "/api/v1/admin/assignments",
        {"manager_id": manager.user_id, "employee_id": employee.user_id},
        token=manager.access_token,
    )
    cli = broker.admin("assign", "--tenant", org.tenant.name, "--manager", manager.email,
                       "--employee", employee.email)

    assert made.status == 201, made.body
    assert by_manager.status == 403
    assert cli["created"] is True
    listed = org.api.call("GET", "/api/v1/employees", token=manager.access_token)
    assert {e["user_id"] for e in listed.body["employees"]} == {
        org.other_employee.user_id, employee.user_id
    }


def test_a_revoked_device_stops_at_once(org: Org, broker: BrokerProcess) -> None:
    device = enroll(org.api, broker, org.tenant, org.employee.user_id)
    listed = org.api.call("GET", "/api/v1/admin/devices", token=org.admin.access_token)
    assert device.device_id in {d["device_id"] for d in listed.body["devices"]}
    outsider = org.api.call("POST", f"/api/v1/admin/devices/{device.device_id}/revoke",
                            token=org.outsider.access_token)
    assert outsider.status == 404

    revoked = org.api.call("POST", f"/api/v1/admin/devices/{device.device_id}/revoke",
                           token=org.admin.access_token)

    assert revoked.status == 200
    assert org.api.call("POST", "/api/v1/recordings", {"started_at": "2026-01-01T00:00:00Z"},
                        token=device.access_token).status == 401
    assert org.api.call("POST", "/api/v1/devices/token",
                        {"refresh_token": device.refresh_token}).status == 401


def test_a_revoked_device_is_refused_where_the_service_checks_it_in_its_transaction(
    org: Org, broker: BrokerProcess
) -> None:
    """Upload grant, completion and heartbeat read the device row in the request's own
    transaction, not in the guard (`Route.checks_device`): revocation holds there at once."""
    device = enroll(org.api, broker, org.tenant, org.employee.user_id)
    recording_id = start_recording(org.api, device)
    segments = f"/api/v1/recordings/{recording_id}/segments"
    granted = org.api.call("POST", f"{segments}/0/upload", random_segment().declaration(),
                           token=device.access_token)
    assert granted.status == 200, granted.body
    assert org.api.call("POST", f"/api/v1/admin/devices/{device.device_id}/revoke",
                        token=org.admin.access_token).status == 200

    beat = {"state": "recording", "spool_bytes": 0, "spool_segments": 0, "errors": 0}
    refused = {
        "upload": org.api.call("POST", f"{segments}/1/upload", random_segment().declaration(),
                               token=device.access_token),
        "complete": org.api.call("POST", f"{segments}/0/complete", token=device.access_token),
        "heartbeat": org.api.call("POST", "/api/v1/devices/heartbeat", beat,
                                  token=device.access_token),
    }
    assert {k: (r.status, r.body["error"]) for k, r in refused.items()} == {
        k: (401, "invalid_token") for k in refused
    }
    checked_by_service = {r.path.rsplit("/", 1)[-1] for r in ROUTES if r.checks_device}
    assert checked_by_service == set(refused)  # a new such route needs its case here


def test_a_person_enrolls_their_own_workstation_by_login(org: Org) -> None:
    reply = org.api.call("POST", "/api/v1/devices/register", {"name": "laptop"},
                         token=org.employee.access_token)
    assert reply.status == 201, reply.body
    started = org.api.call("POST", "/api/v1/recordings", {"started_at": now_iso()},
                           token=reply.body["access_token"])
    assert started.status == 201
