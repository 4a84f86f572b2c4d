"""The tenant admin's fleet: enrollment codes (one-time or for N devices), the devices with
what their agents report, and the recording policy page; over HTTP, on both databases.

Real broker processes, real uploads to moto; the broker's own services run in this process
(`in_process`) only to make rows at another instant (an expired code, a device gone silent).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import update

from agent import config as agent_config
from broker import admin
from broker.db.engine import create_engine
from broker.db.schema import users
from broker.devices import costs
from broker.services import Services
from tests.identity.people import (
    Client,
    Clock,
    Person,
    audit_entries,
    in_process,
    person,
    verified_recording,
)
from tests.support.api import Device, Operator, Reply, Tenant, make_tenant
from tests.support.broker import BrokerProcess
from tests.support.s3 import S3Endpoint

CODES = "/api/v1/admin/enrollment-codes"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@dataclass
class Fleet:
    api: Client
    tenant: Tenant
    admin: Person
    manager: Person
    employee: Person
    outsider: Person  # an admin of another tenant
    outsider_tenant: Tenant


@pytest.fixture(scope="module")
def fleet(broker: BrokerProcess, s3_endpoint: S3Endpoint) -> Fleet:
    api = Client(broker.url)
    tenant = make_tenant(broker, s3_endpoint)
    outside = make_tenant(broker, s3_endpoint)
    return Fleet(
        api, tenant, person(api, broker, tenant, "admin"),
        person(api, broker, tenant, "manager"), person(api, broker, tenant),
        person(api, broker, outside, "admin"), outside,
    )


def create_code(fleet: Fleet, user_id: str, **fields: Any) -> Reply:
    return fleet.api.call(
        "POST", CODES, {"user_id": user_id, **fields}, token=fleet.admin.access_token
    )


def enroll(fleet: Fleet, code: str, name: str = "workstation") -> Reply:
    return fleet.api.call("POST", "/api/v1/devices/enroll", {"code": code, "name": name})


def form_post(fleet: Fleet, path: str, fields: dict[str, str], who: Person | None = None) -> Reply:
    token = (who or fleet.admin).access_token
    return fleet.api.call(
        "POST", path, body=urlencode(fields).encode(), headers=FORM, token=token
    )


def listed_code(fleet: Fleet, code_id: str) -> dict[str, Any]:
    codes = fleet.api.call("GET", CODES, token=fleet.admin.access_token).body["codes"]
    return next(c for c in codes if c["code_id"] == code_id)


def devices_of(fleet: Fleet, token: str | None = None) -> list[dict[str, Any]]:
    reply = fleet.api.call("GET", "/api/v1/admin/devices", token=token or fleet.admin.access_token)
    assert reply.status == 200, reply.body
    devices: list[dict[str, Any]] = reply.body["devices"]
    return devices


# --- Enrollment codes


def test_an_n_use_code_enrolls_exactly_n_devices_in_parallel(
    fleet: Fleet, broker: BrokerProcess
) -> None:
    kiosk = person(fleet.api, broker, fleet.tenant)
    Operator(broker).run(
        admin.set_device_cap, tenant=fleet.tenant.tenant_id, user=kiosk.user_id, cap=50
    )
    created = create_code(fleet, kiosk.user_id, max_uses=5, label="front desk")
    assert created.status == 201, created.body
    code = created.body["code"]
    assert (created.body["uses"], created.body["max_uses"]) == (0, 5)
    assert (created.body["state"], created.body["label"]) == ("active", "front desk")

    start = threading.Barrier(9)

    def one(n: int) -> Reply:
        start.wait()
        return enroll(fleet, code, f"desk-{n}")

    with concurrent.futures.ThreadPoolExecutor(9) as pool:
        replies = list(pool.map(one, range(9)))

    enrolled = [r for r in replies if r.status == 201]
    refused = [r for r in replies if r.status != 201]
    assert len(enrolled) == 5, [r.status for r in replies]
    assert {(r.status, r.body["error"]) for r in refused} == {(401, "invalid_enrollment_code")}
    mine = [d for d in devices_of(fleet) if d["user_id"] == kiosk.user_id]
    assert sorted(d["device_id"] for d in mine) == sorted(r.body["device_id"] for r in enrolled)
    spent = listed_code(fleet, created.body["code_id"])
    assert (spent["uses"], spent["max_uses"], spent["state"]) == (5, 5, "used_up")
    assert spent["used_at"] is not None
    enrolls = [e for e in audit_entries(broker, fleet.tenant.tenant_id)
               if e.action == "device.enroll" and e.details.get("code") == spent["code_id"]]
    assert len(enrolls) == 5


def test_a_one_time_code_works_once_and_says_how_to_use_it(
    fleet: Fleet, broker: BrokerProcess
) -> None:
    created = create_code(fleet, fleet.employee.user_id)
    assert created.status == 201, created.body
    code = created.body["code"]
    assert created.body["max_uses"] == 1
    assert created.body["command"] == (
        f"bucketreel-agent enroll --broker {broker.url} --code {code}"
    )
    expires = datetime.fromisoformat(created.body["expires_at"]) - datetime.now(UTC)
    assert 23.9 * 3600 < expires.total_seconds() <= 24 * 3600, "the TTL setting's default"

    assert enroll(fleet, code).status == 201
    again = enroll(fleet, code)
    assert (again.status, again.body["error"]) == (401, "invalid_enrollment_code")
    assert listed_code(fleet, created.body["code_id"])["state"] == "used_up"


def test_a_revoked_or_expired_code_enrolls_nothing(fleet: Fleet, broker: BrokerProcess) -> None:
    created = create_code(fleet, fleet.employee.user_id, max_uses=3, expires_in=600)
    revoked = fleet.api.call(
        "POST", f"{CODES}/{created.body['code_id']}/revoke", token=fleet.admin.access_token
    )
    assert revoked.status == 200, revoked.body
    assert (revoked.body["state"], revoked.body["uses"]) == ("revoked", 0)
    refused = enroll(fleet, created.body["code"])
    assert (refused.status, refused.body["error"]) == (401, "invalid_enrollment_code")

    an_hour_ago = Clock(datetime.now(UTC) - timedelta(hours=1))

    async def issue(services: Services) -> tuple[str, str]:
        issued = await services.devices.issue_enrollment_code(
            fleet.tenant.tenant_id, fleet.employee.user_id, actor="test", max_uses=3, ttl=300
        )
        return issued.code, issued.info["code_id"]

    code, code_id = in_process(broker, an_hour_ago, issue)
    expired = enroll(fleet, code)
    assert (expired.status, expired.body["error"]) == (401, "invalid_enrollment_code")
    assert listed_code(fleet, code_id)["state"] == "expired"
    actions = [e.action for e in audit_entries(broker, fleet.tenant.tenant_id)]
    assert "device.enrollment_code_revoke" in actions


def test_no_listing_page_or_audit_entry_shows_a_code(fleet: Fleet, broker: BrokerProcess) -> None:
    created = create_code(fleet, fleet.employee.user_id, label="laptops")
    code = created.body["code"].encode()
    listing = fleet.api.call("GET", CODES, token=fleet.admin.access_token)
    assert listing.status == 200
    assert created.body["code_id"].encode() in listing.raw
    assert code not in listing.raw
    assert "code" not in listing.body["codes"][0]
    shown = listed_code(fleet, created.body["code_id"])
    assert (shown["email"], shown["label"]) == (fleet.employee.email, "laptops")
    page = fleet.api.call("GET", "/admin/enrollment", token=fleet.admin.access_token)
    assert page.status == 200
    assert b"laptops" in page.raw
    assert code not in page.raw
    entries = audit_entries(broker, fleet.tenant.tenant_id)
    assert not [e for e in entries if code.decode() in repr(e)]
    assert any(e.action == "device.enrollment_code" and e.details.get("max_uses") == 1
               for e in entries)


def test_only_admins_make_list_or_revoke_codes(fleet: Fleet) -> None:
    created = create_code(fleet, fleet.employee.user_id)
    revoke = f"{CODES}/{created.body['code_id']}/revoke"
    for who in (fleet.manager, fleet.employee):
        token = who.access_token
        assert fleet.api.call("GET", CODES, token=token).status == 403
        made = fleet.api.call("POST", CODES, {"user_id": who.user_id}, token=token)
        assert made.status == 403
        assert fleet.api.call("POST", revoke, token=token).status == 403
        for path in ("/admin/devices", "/admin/enrollment", "/admin/policy"):
            assert fleet.api.call("GET", path, token=token).status == 403, path
        assert form_post(fleet, "/admin/policy", {"fps": "2"}, who).status == 403
    assert listed_code(fleet, created.body["code_id"])["state"] == "active"


def test_another_tenants_codes_and_people_are_not_found(fleet: Fleet) -> None:
    theirs = fleet.api.call(
        "POST", CODES, {"user_id": fleet.outsider.user_id}, token=fleet.outsider.access_token
    )
    assert theirs.status == 201
    revoke = f"{CODES}/{theirs.body['code_id']}/revoke"
    refused = fleet.api.call("POST", revoke, token=fleet.admin.access_token)
    assert (refused.status, refused.body["error"]) == (404, "not_found")
    page = form_post(fleet, f"/admin/enrollment/{theirs.body['code_id']}/revoke", {})
    assert page.status == 404
    for_them = create_code(fleet, fleet.outsider.user_id)
    assert (for_them.status, for_them.body["error"]) == (404, "not_found")
    ours = fleet.api.call("GET", CODES, token=fleet.admin.access_token).body["codes"]
    assert theirs.body["code_id"] not in {c["code_id"] for c in ours}
    assert enroll(fleet, theirs.body["code"]).status == 201, "theirs still works"


def set_state(broker: BrokerProcess, user_id: str, state: str) -> None:
    """A person's state as the people service sets it (migration 0012's `users.state`)."""

    async def go() -> None:
        engine = create_engine(broker.database_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(update(users).where(users.c.id == user_id).values(state=state))
        finally:
            await engine.dispose()

    asyncio.run(go())


def test_a_deactivated_persons_codes_enroll_nothing(fleet: Fleet, broker: BrokerProcess) -> None:
    leaver = person(fleet.api, broker, fleet.tenant)
    code = create_code(fleet, leaver.user_id, max_uses=2).body["code"]
    set_state(broker, leaver.user_id, "deactivated")
    refused = enroll(fleet, code)
    assert (refused.status, refused.body["error"]) == (401, "invalid_enrollment_code")
    again = create_code(fleet, leaver.user_id)
    assert (again.status, again.body["error"]) == (409, "conflict")
    assert "deactivated" in again.body["message"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"max_uses": 0}, "max_uses"),
        ({"max_uses": 1001}, "max_uses"),
        ({"expires_in": 299}, "expires_in"),
        ({"expires_in": 30 * 86_400 + 1}, "expires_in"),
        ({"label": "x" * 201}, "label"),
        ({"code": "mine"}, "code"),
    ],
)
def test_bad_code_requests_name_the_field_and_save_nothing(
    fleet: Fleet, fields: dict[str, Any], field: str
) -> None:
    before = fleet.api.call("GET", CODES, token=fleet.admin.access_token).body
    refused = create_code(fleet, fleet.employee.user_id, **fields)
    assert refused.status == 400, refused.body
    assert field in refused.body["message"]
    assert fleet.api.call("GET", CODES, token=fleet.admin.access_token).body == before


def test_the_enrollment_form_shows_the_code_once_and_keeps_bad_input(fleet: Fleet) -> None:
    made = form_post(fleet, "/admin/enrollment", {
        "user_id": fleet.employee.user_id, "max_uses": "2", "hours": "2", "label": "lab",
    })
    assert made.status == 200
    text = made.raw.decode()
    assert "bucketreel-agent enroll --broker http" in text
    code = text.split('id="code">')[1].split("<")[0]
    assert code.startswith("bre_")
    assert f"--code {code}" in text
    again = fleet.api.call("GET", "/admin/enrollment", token=fleet.admin.access_token)
    assert code.encode() not in again.raw
    assert enroll(fleet, code).status == 201

    bad = form_post(fleet, "/admin/enrollment", {
        "user_id": fleet.employee.user_id, "max_uses": "5000", "hours": "2", "label": "typed",
    })
    assert bad.status == 400
    assert b"Devices (uses): must be at least 1 and at most 1000" in bad.raw
    assert b'value="typed"' in bad.raw
    assert b'value="5000"' in bad.raw
    nobody = form_post(fleet, "/admin/enrollment", {"max_uses": "1", "hours": "2"})
    assert nobody.status == 400
    assert b"Person: choose" in nobody.raw


def test_the_cli_issues_multi_use_codes(fleet: Fleet, broker: BrokerProcess) -> None:
    issued = broker.admin(
        "enrollment-code", "--tenant", fleet.tenant.tenant_id, "--user", fleet.employee.email,
        "--uses", "3", "--label", "from the shell", "--expires-in", "3600",
    )
    assert issued["max_uses"] == 3
    shown = listed_code(fleet, issued["code_id"])
    assert (shown["label"], shown["max_uses"], shown["state"]) == ("from the shell", 3, "active")
    left = datetime.fromisoformat(shown["expires_at"]) - datetime.now(UTC)
    assert 3500 < left.total_seconds() <= 3600


# --- Devices


def beat(fleet: Fleet, token: str, **fields: Any) -> Reply:
    body = {"state": "recording", "spool_bytes": 0, "spool_segments": 0, "errors": 0, **fields}
    reply = fleet.api.call("POST", "/api/v1/devices/heartbeat", body, token=token)
    assert reply.status == 200, reply.body
    return reply


def test_the_device_list_shows_agent_heartbeat_backlog_upload_and_gaps(
    fleet: Fleet, broker: BrokerProcess
) -> None:
    code = create_code(fleet, fleet.employee.user_id).body["code"]
    device = enroll(fleet, code, "ann-desktop").body
    fresh = next(d for d in devices_of(fleet) if d["device_id"] == device["device_id"])
    assert (fresh["state"], fresh["last_upload"], fresh["recent_gaps"]) == ("enrolled", None, [])

    token = device["access_token"]
    reported = {"spool_bytes": 2_500_000, "spool_segments": 3, "agent_version": "9.8.7"}
    beat(fleet, token, **reported)
    as_device = Device(fleet.tenant, fleet.employee.user_id, device["device_id"], token,
                       device["refresh_token"])
    recording_id = verified_recording(fleet.api, as_device)
    gap = fleet.api.call(
        "POST", f"/api/v1/recordings/{recording_id}/gaps", {"seqs": [1, 2], "reason": "refused"},
        token=token,
    )
    assert gap.status == 201, gap.body

    listed = next(d for d in devices_of(fleet) if d["device_id"] == device["device_id"])
    assert listed["email"] == fleet.employee.email
    assert listed["name"] == "ann-desktop"
    assert listed["agent_version"] == "9.8.7"
    assert listed["state"] == "recording"
    assert (listed["spool_segments"], listed["spool_bytes"]) == (3, 2_500_000)
    seen = datetime.fromisoformat(listed["last_seen_at"])
    assert datetime.now(UTC) - seen < timedelta(minutes=1)
    upload = listed["last_upload"]
    assert (upload["recording_id"], upload["seq"], upload["size"]) == (recording_id, 0, 4096)
    assert [(g["recording_id"], g["reason"], g["segments"]) for g in listed["recent_gaps"]] == [
        (recording_id, "refused", 2)
    ]
    assert listed["silent"] is False
    assert listed["last_status"]["spool_segments"] == 3, "the old fields are still there"

    beat(fleet, token, state="paused_idle", **reported)
    paused = next(d for d in devices_of(fleet) if d["device_id"] == device["device_id"])
    assert (paused["state"], paused["paused_reason"]) == ("paused", "idle")

    page = fleet.api.call("GET", "/admin/devices", token=fleet.admin.access_token)
    assert page.status == 200
    row = page.raw.decode().split(f'id="device-{device["device_id"]}"')[1].split("</tr>")[0]
    for shown in ("ann-desktop", fleet.employee.email, "9.8.7", "3 segments, 2.5 MB",
                  "paused (idle)", "refused", f"/recordings/{recording_id}"):
        assert shown in row, shown

    revoked = form_post(fleet, f"/admin/devices/{device['device_id']}/revoke", {})
    assert revoked.status == 303
    gone = next(d for d in devices_of(fleet) if d["device_id"] == device["device_id"])
    assert (gone["state"], gone["revoked_at"] is not None) == ("revoked", True)
    after = fleet.api.call("POST", "/api/v1/devices/heartbeat", {
        "state": "recording", "spool_bytes": 0, "spool_segments": 0, "errors": 0,
    }, token=token)
    assert after.status == 401


def test_a_silent_device_shows_on_the_admins_start_page(
    fleet: Fleet, broker: BrokerProcess
) -> None:
    an_hour_ago = Clock(datetime.now(UTC) - timedelta(hours=1))

    async def enroll_then(services: Services) -> str:
        issued = await services.devices.issue_enrollment_code(
            fleet.tenant.tenant_id, fleet.employee.user_id, actor="test"
        )
        pair = await services.devices.enroll(issued.code, "quiet-laptop")
        return pair.device_id

    quiet = in_process(broker, an_hour_ago, enroll_then)
    listed = next(d for d in devices_of(fleet) if d["device_id"] == quiet)
    assert (listed["state"], listed["silent"]) == ("silent", True)

    home = fleet.api.call("GET", "/", token=fleet.admin.access_token)
    assert home.status == 200
    assert b"silent now" in home.raw
    assert f'href="/admin/devices#device-{quiet}">quiet-laptop</a>'.encode() in home.raw
    page = fleet.api.call("GET", "/admin/devices", token=fleet.admin.access_token)
    row = page.raw.decode().split(f'id="device-{quiet}"')[1].split("</tr>")[0]
    assert '<td class="state warning">silent</td>' in row
    for who in (fleet.manager, fleet.employee):
        assert b"quiet-laptop" not in fleet.api.call("GET", "/", token=who.access_token).raw
    theirs = fleet.api.call("GET", "/", token=fleet.outsider.access_token)
    assert b"quiet-laptop" not in theirs.raw


def test_another_tenants_device_cannot_be_revoked_from_the_page(fleet: Fleet) -> None:
    code = fleet.api.call(
        "POST", CODES, {"user_id": fleet.outsider.user_id}, token=fleet.outsider.access_token
    ).body["code"]
    theirs = enroll(fleet, code).body
    refused = form_post(fleet, f"/admin/devices/{theirs['device_id']}/revoke", {})
    assert refused.status == 404
    still = devices_of(fleet, fleet.outsider.access_token)
    assert next(d for d in still if d["device_id"] == theirs["device_id"])["revoked_at"] is None


# --- The recording policy page


def test_the_policy_page_saves_and_shows_what_it_costs(fleet: Fleet) -> None:
    page = fleet.api.call("GET", "/admin/policy", token=fleet.admin.access_token)
    assert page.status == 200
    assert b"27 MB per recorded hour per person" in page.raw, "the agents' default 1 fps"
    assert b"27.4 MB per recorded hour at 1 fps" in page.raw, "the basis is stated"

    saved = form_post(fleet, "/admin/policy", {
        "fps": "2", "segment_seconds": "30", "idle_seconds": "",
    })
    assert saved.status == 200
    assert b"Saved." in saved.raw
    assert b"55 MB per recorded hour per person" in saved.raw
    assert b"120 objects" in saved.raw
    policy = fleet.api.call("GET", "/api/v1/admin/policy", token=fleet.admin.access_token).body
    assert (policy["fps"], policy["segment_seconds"], policy["idle_seconds"]) == (2, 30, None)


def test_the_policy_page_sets_and_clears_the_quality_level(fleet: Fleet) -> None:
    page = fleet.api.call("GET", "/admin/policy", token=fleet.admin.access_token)
    assert b'<option value="" selected>agents decide</option>' in page.raw
    assert b'<option value="av1">AV1 (SVT-AV1): no smaller than standard' in page.raw

    saved = form_post(fleet, "/admin/policy", {"quality": "av1"})
    assert saved.status == 200
    assert b'<option value="av1" selected>' in saved.raw
    policy = fleet.api.call("GET", "/api/v1/admin/policy", token=fleet.admin.access_token).body
    assert policy["quality"] == "av1"

    refused = form_post(fleet, "/admin/policy", {"quality": "ultra"})
    assert refused.status == 400
    assert b"Quality: must be one of" in refused.raw
    still = fleet.api.call("GET", "/api/v1/admin/policy", token=fleet.admin.access_token).body
    assert still == policy, "nothing saved"

    cleared = form_post(fleet, "/admin/policy", {"quality": ""})
    assert cleared.status == 200
    policy = fleet.api.call("GET", "/api/v1/admin/policy", token=fleet.admin.access_token).body
    assert policy["quality"] is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"fps": "61"}, b"Frames per second: must be more than 0 and at most 60"),
        ({"fps": "0"}, b"Frames per second: must be more than 0 and at most 60"),
        ({"fps": "fast"}, b"Frames per second: must be a number"),
        ({"segment_seconds": "0.5"}, b"Segment length (seconds): must be at least 1"),
        ({"idle_seconds": "1.5"}, b"Idle timeout (seconds): must be a whole number"),
        ({"idle_seconds": "-3"}, b"Idle timeout (seconds): must be at least 0"),
    ],
)
def test_the_policy_page_refuses_values_out_of_range(
    fleet: Fleet, fields: dict[str, str], message: bytes
) -> None:
    before = fleet.api.call("GET", "/api/v1/admin/policy", token=fleet.admin.access_token).body
    typed = {"fps": "1", "segment_seconds": "60", "idle_seconds": "300", **fields}
    refused = form_post(fleet, "/admin/policy", typed)
    assert refused.status == 400
    assert message in refused.raw
    for value in typed.values():
        assert f'value="{value}"'.encode() in refused.raw, "the input is kept"
    after = fleet.api.call("GET", "/api/v1/admin/policy", token=fleet.admin.access_token).body
    assert after == before, "nothing saved"


def test_the_cost_basis_uses_the_agents_own_defaults() -> None:
    defaults = agent_config.Settings()
    agents = {
        "fps": defaults.fps, "segment_seconds": defaults.segment_seconds,
        "idle_seconds": defaults.idle_seconds,
    }
    assert agents == costs.AGENT_DEFAULTS
    assert costs.estimate(None, None, None).mb_per_hour == costs.MEASURED_MB_PER_HOUR
