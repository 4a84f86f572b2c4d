"""Revocation across replicas: two broker processes on one PostgreSQL database. A device
revoked, or a person signed out everywhere, through replica A is refused at once by replica
B; and the invalidation every replica hears (`broker/db/notify.py`: `pg_notify` at commit,
LISTEN on a connection of each replica's own) makes the round trip A → PostgreSQL → B, seen
in B's log at DEBUG (its subscribers: the storage clients it caches per tenant). When B's
listening connection is cut, B listens again, drops every cache (notes may have been
missed), and hears the next note.

The refusals hold because every request checks its device or session in the database; this
test keeps them holding once replicas cache (a cache that served the revoked device from
memory would fail the first assertions)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from broker import admin
from tests.conftest import _start
from tests.identity.people import Person, person
from tests.support.api import (
    Api,
    Device,
    Operator,
    Tenant,
    enroll,
    make_tenant,
    start_recording,
)
from tests.support.broker import BrokerProcess
from tests.support.postgres import PostgresServer
from tests.support.replicas import run_replicas, until
from tests.support.s3 import S3Endpoint

WHOAMI = "/api/v1/employees"


def messages(replica: BrokerProcess) -> list[str]:
    found = []
    for line in replica.log_text().splitlines():
        if line.startswith("{"):
            found.append(str(json.loads(line).get("msg", "")))
    return found


def heard(replica: BrokerProcess, topic: str, tenant_id: str, key: str = "-") -> bool:
    """The replica received (from PostgreSQL, not its own commit) this invalidation."""
    wanted = f"invalidation {topic} tenant={tenant_id} key={key} (notify): "
    return any(m.startswith(wanted) for m in messages(replica))


def resets(replica: BrokerProcess) -> int:
    return sum(m.startswith("listening for invalidations: every cache dropped")
               for m in messages(replica))


@pytest.fixture
def pair(shared_database: str, session_tmp: Path) -> Iterator[list[BrokerProcess]]:
    with ExitStack() as stack:
        replicas = _start("two broker replicas", stack, run_replicas(
            shared_database, 2, extra_env={"BUCKETREEL_LOG_LEVEL": "DEBUG"},
            log_dir=session_tmp / "logs",
        ))
        until("every replica listening", lambda: all(resets(r) >= 1 for r in replicas))
        yield replicas


@pytest.fixture
def tenant(pair: list[BrokerProcess], s3_endpoint: S3Endpoint) -> Tenant:
    return make_tenant(pair[0], s3_endpoint)


def assert_ended(api: Api, path: str, access: str, refresh_path: str, refresh: str) -> None:
    """The access token is refused at once (401 invalid_token), and its refresh token."""
    call = api.call("GET", path, token=access)
    assert (call.status, call.body["error"]) == (401, "invalid_token"), call.body
    renewed = api.call("POST", refresh_path, {"refresh_token": refresh})
    assert renewed.status == 401, renewed.body


def test_a_device_revoked_on_one_replica_is_refused_at_once_on_another(
    pair: list[BrokerProcess], tenant: Tenant
) -> None:
    a, b = (Api(r.url) for r in pair)
    owner: Person = person(a, pair[0], tenant, "admin")
    device: Device = enroll(a, pair[0], tenant)
    rid = start_recording(b, device)  # B has served the device

    revoked = a.call("POST", f"/api/v1/admin/devices/{device.device_id}/revoke",
                     token=owner.access_token)
    assert revoked.status == 200, revoked.body

    assert_ended(b, f"/api/v1/recordings/{rid}", device.access_token,
                 "/api/v1/devices/token", device.refresh_token)
    until("B hearing the revocation",
          lambda: heard(pair[1], "device_revoked", tenant.tenant_id, device.device_id))


def test_sign_out_everywhere_on_one_replica_ends_the_session_on_another(
    pair: list[BrokerProcess], tenant: Tenant
) -> None:
    a, b = (Api(r.url) for r in pair)
    someone = person(a, pair[0], tenant, "employee")
    assert b.call("GET", WHOAMI, token=someone.access_token).status == 200

    out = a.call("POST", "/api/v1/auth/sign-out-everywhere", token=someone.access_token)
    assert out.status == 200, out.body

    assert_ended(b, WHOAMI, someone.access_token, "/api/v1/auth/token", someone.refresh_token)
    until("B hearing the sign-out",
          lambda: heard(pair[1], "person_ended", tenant.tenant_id, someone.user_id))


def test_storage_and_policy_changes_reach_every_replica_and_their_caches(
    pair: list[BrokerProcess], tenant: Tenant, s3_endpoint: S3Endpoint
) -> None:
    a = Api(pair[0].url)
    owner = person(a, pair[0], tenant, "admin")
    # the operator's command (a third process) changes the credentials
    Operator(pair[0]).run(
        admin.set_storage, tenant=tenant.tenant_id, bucket=tenant.bucket,
        region=s3_endpoint.region, endpoint_url=s3_endpoint.url, prefix=tenant.prefix,
        access_key_id=s3_endpoint.access_key_id, secret_access_key=s3_endpoint.secret_access_key,
        accept_risk=True,
    )
    changed = a.call("PATCH", "/api/v1/admin/policy", {"fps": 1}, token=owner.access_token)
    assert changed.status == 200, changed.body
    until("the storage change heard on both",
          lambda: all(heard(r, "storage", tenant.tenant_id) for r in pair))
    until("the policy change heard on B", lambda: heard(pair[1], "policy", tenant.tenant_id))
    # A heard its own policy change at its commit, not again from PostgreSQL
    assert not heard(pair[0], "policy", tenant.tenant_id)
    own = f"invalidation policy tenant={tenant.tenant_id} key=- (commit): 1 subscriber(s)"
    assert any(m.startswith(own) for m in messages(pair[0]))


def test_a_replica_that_lost_its_listener_listens_again_and_drops_its_caches(
    pair: list[BrokerProcess], tenant: Tenant, shared_database: str,
    postgres_server: PostgresServer,
) -> None:
    a = Api(pair[0].url)
    owner = person(a, pair[0], tenant, "admin")
    before = resets(pair[1])
    database = shared_database.rsplit("/", 1)[1]
    cut = postgres_server.psql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE application_name = 'bucketreel-invalidations' AND datname = current_database()",
        database=database,
    )
    assert int(cut) == 2  # one listener per replica
    until("B listening again, its caches dropped", lambda: resets(pair[1]) > before)
    device = enroll(a, pair[0], tenant)
    revoked = a.call("POST", f"/api/v1/admin/devices/{device.device_id}/revoke",
                     token=owner.access_token)
    assert revoked.status == 200, revoked.body
    until("B hearing the next note",
          lambda: heard(pair[1], "device_revoked", tenant.tenant_id, device.device_id))
