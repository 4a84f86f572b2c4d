"""The tenant's recording policy: admins set and clear it (API and CLI), bad values change
nothing, every change is audited, and each device's heartbeat reply carries its own tenant's
policy, never another's. Real broker process, both databases."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.identity.people import Person, audit_entries, login, make_person, mfa, person
from tests.support.api import Api, Device, Tenant, enroll, make_tenant, snapshot
from tests.support.broker import BrokerProcess, broker_script
from tests.support.s3 import S3Endpoint

POLICY = "/api/v1/admin/policy"
HEARTBEAT = "/api/v1/devices/heartbeat"
BEAT = {"state": "recording", "spool_bytes": 0, "spool_segments": 0, "errors": 0}
UNSET = {"fps": None, "segment_seconds": None, "idle_seconds": None, "quality": None}


AdminOf = Callable[[Tenant], Person]


@pytest.fixture(scope="module")
def admin_of(api: Api, broker: BrokerProcess) -> AdminOf:
    """A signed-in admin of a tenant, one per tenant for the whole module."""
    signed: dict[str, Person] = {}

    def admin(tenant: Tenant) -> Person:
        if tenant.tenant_id not in signed:
            signed[tenant.tenant_id] = person(api, broker, tenant, "admin")
        return signed[tenant.tenant_id]

    return admin


def fresh(broker: BrokerProcess, s3: S3Endpoint) -> Tenant:
    """A tenant of its own per test: its policy starts unset."""
    return make_tenant(broker, s3)


def beat(api: Api, device: Device) -> dict[str, Any]:
    reply = api.call("POST", HEARTBEAT, BEAT, token=device.access_token)
    assert reply.status == 200, reply.body
    policy: dict[str, Any] = reply.body["policy"]
    return policy


def cli(broker: BrokerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(broker_script()), "admin", *args], env=broker.env, capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=60, check=False,
    )


def test_an_admin_sets_changes_and_clears_the_policy_and_each_change_is_audited(
    api: Api, broker: BrokerProcess, s3_endpoint: S3Endpoint, admin_of: AdminOf
) -> None:
    tenant = fresh(broker, s3_endpoint)
    boss = admin_of(tenant)
    token = boss.access_token

    first = api.call("GET", POLICY, token=token)
    assert first.status == 200, first.body
    assert first.body == {**UNSET, "updated_at": None}

    put = api.call("PATCH", POLICY, {"fps": 2, "segment_seconds": 10}, token=token)
    assert put.status == 200, put.body
    assert {k: put.body[k] for k in UNSET} == {**UNSET, "fps": 2, "segment_seconds": 10}
    assert put.body["updated_at"]
    # keys not named keep their values; null clears one
    put = api.call("PATCH", POLICY, {"idle_seconds": 120, "fps": None}, token=token)
    assert put.status == 200, put.body
    expected = {"fps": None, "segment_seconds": 10, "idle_seconds": 120, "quality": None}
    assert {k: put.body[k] for k in UNSET} == expected
    assert api.call("GET", POLICY, token=token).body == put.body

    changes = [e for e in audit_entries(broker, tenant.tenant_id) if e.action == "policy.set"]
    assert [(e.actor, e.details) for e in changes] == [
        (f"user:{boss.user_id}", {"old": UNSET, "new": {**UNSET, "fps": 2, "segment_seconds": 10}}),
        (f"user:{boss.user_id}", {
            "old": {**UNSET, "fps": 2, "segment_seconds": 10}, "new": expected,
        }),
    ]


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({"fps": 0}, "fps: must be more than 0 and at most 60"),
        ({"fps": 61}, "fps: must be more than 0 and at most 60"),
        ({"fps": "2"}, "fps: must be a number"),
        ({"fps": True}, "fps: must be a number"),
        ({"segment_seconds": 0.5}, "segment_seconds: must be at least 1 and at most 3600"),
        ({"idle_seconds": -1}, "idle_seconds: must be at least 0 and at most 86400"),
        ({"idle_seconds": 2.5}, "idle_seconds: must be an integer"),
        ({"quality": "ultra"},
         "quality: must be one of av1, compact, high, standard"),
        ({"quality": 28}, "quality: must be one of av1, compact, high, standard"),
        ({"fps": 2, "segment_second": 10}, "segment_second: not a policy key"),
        ({}, "name at least one of fps, segment_seconds, idle_seconds"),
        ([{"fps": 2}], "body: must be a JSON object"),
    ],
)
def test_a_bad_policy_is_refused_with_a_clear_message_and_changes_nothing(
    api: Api, broker: BrokerProcess, tenant: Tenant, admin_of: AdminOf,
    body: Any, said: str,
) -> None:
    token = admin_of(tenant).access_token
    assert api.call("PATCH", POLICY, {"fps": 1}, token=token).status == 200
    before = snapshot(broker.database_url)

    reply = api.call("PATCH", POLICY, body, token=token)

    assert reply.status == 400, reply.body
    assert reply.body["error"] == "invalid_field"
    assert said in reply.body["message"]
    assert snapshot(broker.database_url) == before


def test_an_admin_sets_the_quality_level_it_is_audited_and_reaches_the_devices(
    api: Api, broker: BrokerProcess, s3_endpoint: S3Endpoint, admin_of: AdminOf
) -> None:
    tenant = fresh(broker, s3_endpoint)
    device = enroll(api, broker, tenant)
    boss = admin_of(tenant)

    put = api.call("PATCH", POLICY, {"quality": "av1"}, token=boss.access_token)
    assert put.status == 200, put.body
    assert {k: put.body[k] for k in UNSET} == {**UNSET, "quality": "av1"}
    assert beat(api, device) == {"quality": "av1"}
    put = api.call("PATCH", POLICY, {"quality": "compact", "fps": 2}, token=boss.access_token)
    assert put.status == 200, put.body
    assert beat(api, device) == {"quality": "compact", "fps": 2}
    assert api.call("PATCH", POLICY, {"quality": None}, token=boss.access_token).status == 200
    assert beat(api, device) == {"fps": 2}

    changes = [e.details for e in audit_entries(broker, tenant.tenant_id)
               if e.action == "policy.set"]
    assert changes == [
        {"old": UNSET, "new": {**UNSET, "quality": "av1"}},
        {"old": {**UNSET, "quality": "av1"},
         "new": {**UNSET, "quality": "compact", "fps": 2}},
        {"old": {**UNSET, "quality": "compact", "fps": 2}, "new": {**UNSET, "fps": 2}},
    ]


def test_only_a_tenant_admin_reads_or_sets_the_policy(
    api: Api, broker: BrokerProcess, tenant: Tenant, admin_of: AdminOf
) -> None:
    device = enroll(api, broker, tenant)
    others = [person(api, broker, tenant, role) for role in ("manager", "employee")]
    before = snapshot(broker.database_url)
    for method, body in (("GET", None), ("PATCH", {"fps": 5})):
        for other in others:
            reply = api.call(method, POLICY, body, token=other.access_token)
            assert (reply.status, reply.body["error"]) == (403, "forbidden"), (other.role, method)
        assert api.call(method, POLICY, body, token=device.access_token).status == 401
        assert api.call(method, POLICY, body).status == 401
    assert snapshot(broker.database_url) == before


def test_a_browser_session_needs_the_csrf_token_to_change_the_policy(
    api: Api, broker: BrokerProcess, s3_endpoint: S3Endpoint
) -> None:
    tenant = fresh(broker, s3_endpoint)
    boss = make_person(broker, tenant, "admin")
    step = login(api, boss)
    boss.secret = parse_qs(urlsplit(step.body["provisioning_uri"]).query)["secret"][0]
    signed = mfa(api, step.body["challenge"], boss.next_code(), cookie=True)
    assert signed.status == 200, signed.body
    pairs = re.findall(r"(bucketreel_(?:session|csrf))=([^;,\s]+)", signed.headers["Set-Cookie"])
    cookie = "; ".join(f"{name}={value}" for name, value in pairs)

    forged = api.call("PATCH", POLICY, {"fps": 3}, headers={"Cookie": cookie})
    good = api.call(
        "PATCH", POLICY, {"fps": 3},
        headers={"Cookie": cookie, "X-CSRF-Token": signed.body["csrf_token"]},
    )

    assert (forged.status, forged.body["error"]) == (403, "csrf_failed")
    assert good.status == 200, good.body
    assert good.body["fps"] == 3


def test_the_heartbeat_reply_carries_the_devices_own_tenants_policy(
    api: Api, broker: BrokerProcess, s3_endpoint: S3Endpoint, admin_of: AdminOf
) -> None:
    tenant_a, tenant_b = fresh(broker, s3_endpoint), fresh(broker, s3_endpoint)
    device_a, device_b = enroll(api, broker, tenant_a), enroll(api, broker, tenant_b)
    assert beat(api, device_a) == {} == beat(api, device_b)  # nothing set: agents decide

    token_a = admin_of(tenant_a).access_token
    assert api.call("PATCH", POLICY, {"fps": 2, "segment_seconds": 5}, token=token_a).status == 200
    assert beat(api, device_a) == {"fps": 2, "segment_seconds": 5}  # only the keys set
    assert beat(api, device_b) == {}  # tenant A's policy never reaches tenant B

    token_b = admin_of(tenant_b).access_token
    assert api.call("PATCH", POLICY, {"idle_seconds": 0}, token=token_b).status == 200
    assert beat(api, device_b) == {"idle_seconds": 0}
    assert beat(api, device_a) == {"fps": 2, "segment_seconds": 5}
    # tenant B's admin reads and writes tenant B's policy only
    assert api.call("GET", POLICY, token=token_b).body["fps"] is None

    assert api.call("PATCH", POLICY, {"fps": None, "segment_seconds": None}, token=token_a).status \
        == 200
    assert beat(api, device_a) == {}


def test_the_operator_sets_shows_and_clears_the_policy_from_the_command_line(
    broker: BrokerProcess, s3_endpoint: S3Endpoint
) -> None:
    tenant = fresh(broker, s3_endpoint)

    done = cli(broker, "set-policy", "--tenant", tenant.name, "--fps", "2",
               "--segment-seconds", "10", "--idle-seconds", "120", "--quality", "compact")
    assert done.returncode == 0, done.stderr
    assert {k: v for k, v in json.loads(done.stdout).items() if k in UNSET} == {
        "fps": 2, "segment_seconds": 10, "idle_seconds": 120, "quality": "compact",
    }
    done = cli(broker, "set-policy", "--tenant", tenant.tenant_id, "--clear", "fps",
               "idle_seconds", "quality")
    assert done.returncode == 0, done.stderr
    shown = cli(broker, "show-policy", "--tenant", tenant.name)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == json.loads(done.stdout)
    assert json.loads(shown.stdout)["segment_seconds"] == 10
    assert json.loads(shown.stdout)["fps"] is None
    changes = [e for e in audit_entries(broker, tenant.tenant_id) if e.action == "policy.set"]
    assert [e.actor for e in changes] == ["operator", "operator"]
    assert changes[1].details["new"] == {**UNSET, "segment_seconds": 10}


@pytest.mark.parametrize(
    ("args", "code", "said"),
    [
        (["--fps", "0"], 2, "argument --fps: must be more than 0 and at most 60"),
        (["--fps", "fast"], 2, "argument --fps: not a number: 'fast'"),
        (["--idle-seconds", "2.5"], 2, "not a whole number of seconds: '2.5'"),
        (["--quality", "ultra"], 2, "argument --quality: invalid choice: 'ultra'"),
        (["--clear", "colour"], 2, "argument --clear: invalid choice: 'colour'"),
        (["--fps", "2", "--clear", "fps"], 2, "fps: both set and cleared"),
        ([], 2, "nothing to change"),
    ],
)
def test_set_policy_refuses_bad_options_and_changes_nothing(
    broker: BrokerProcess, tenant: Tenant, args: list[str], code: int, said: str
) -> None:
    before = snapshot(broker.database_url)
    done = cli(broker, "set-policy", "--tenant", tenant.name, *args)
    assert done.returncode == code, done.stderr
    assert said in done.stderr
    assert done.stdout == ""
    assert snapshot(broker.database_url) == before


def test_policy_commands_name_an_unknown_tenant(broker: BrokerProcess) -> None:
    for args in (["set-policy", "--fps", "2"], ["show-policy"]):
        done = cli(broker, *args, "--tenant", "no-such-tenant")
        assert done.returncode == 1, done.stderr
        assert "no tenant 'no-such-tenant'" in done.stderr
