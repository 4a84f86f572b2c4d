"""A person cannot multiply their device budgets by registering devices without end.

Each device has its own request budgets, so unlimited registration (200 devices in 2 s) once
meant unlimited recordings and audit rows. Now: a cap on a person's devices not revoked
(default 3; an admin raises it per tenant or per person; revoked devices do not count; it
holds for enrollment codes too), a registration budget per person and per tenant, and the
creates budget (recording starts, gap reports) spent per person and per tenant as well as
per device. Refusals are a 409 `device_limit` or a 429 with Retry-After, and write nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from broker import admin
from tests.identity.people import Client, Person, audit_entries, person
from tests.support.api import (
    Api,
    Device,
    Operator,
    Reply,
    Tenant,
    enroll,
    enrollment_code,
    make_tenant,
    now_iso,
)
from tests.support.broker import BrokerCommandError, BrokerProcess
from tests.support.procs import MissingDependencyError, ProcessStartError
from tests.support.s3 import S3Endpoint


def register(api: Api, who: Person, name: str = "workstation") -> Reply:
    return api.call("POST", "/api/v1/devices/register", {"name": name}, token=who.access_token)


def device_count(broker: BrokerProcess, tenant: Tenant, user_id: str) -> int:
    listed = Operator(broker).run(admin.devices, tenant=tenant.tenant_id)["devices"]
    return sum(1 for d in listed if d["user_id"] == user_id)


def capped(reply: Reply) -> bool:
    return reply.status == 409 and reply.body["error"] == "device_limit"


def test_a_person_has_at_most_three_active_devices(
    api: Api, broker: BrokerProcess, tenant: Tenant
) -> None:
    who = person(Client(broker.url), broker, tenant)
    made = [register(api, who, f"pc {n}") for n in range(3)]
    assert [r.status for r in made] == [201] * 3, [r.body for r in made]

    fourth = register(api, who)
    assert capped(fourth), fourth.body
    assert "cap is 3" in fourth.body["message"]
    assert device_count(broker, tenant, who.user_id) == 3, "the refusal wrote nothing"

    broker.admin("revoke-device", "--tenant", tenant.tenant_id,
                 "--device", made[0].body["device_id"])
    assert register(api, who).status == 201, "a revoked device does not count"
    assert device_count(broker, tenant, who.user_id) == 4, "3 active, 1 revoked"


def test_an_admin_raises_the_cap_per_person_or_per_tenant(
    api: Api, broker: BrokerProcess, s3_endpoint: S3Endpoint
) -> None:
    tenant = make_tenant(broker, s3_endpoint)
    ann, bob = (person(Client(broker.url), broker, tenant) for _ in range(2))
    for _ in range(3):  # by code: these spend no registration budget (5 at once per person)
        enroll(api, broker, tenant, ann.user_id)
    assert capped(register(api, ann))

    shown = broker.admin("set-device-cap", "--tenant", tenant.name, "--user", ann.email,
                         "--max", "4")
    assert shown["device_cap"] == 4
    assert register(api, ann).status == 201
    assert capped(register(api, ann))

    broker.admin("set-device-cap", "--tenant", tenant.tenant_id, "--max", "1")
    assert register(api, bob).status == 201
    assert capped(register(api, bob)), "the tenant's cap applies to bob"
    assert capped(register(api, ann)), "ann's own cap (4) still holds"

    broker.admin("set-device-cap", "--tenant", tenant.tenant_id, "--user", ann.email, "--clear")
    assert capped(register(api, ann)), "ann back to the tenant's cap of 1"
    changes = [e for e in audit_entries(broker, tenant.tenant_id) if e.action == "device.cap_set"]
    assert [e.details["device_cap"] for e in changes] == [4, 1, None]


def test_an_admin_sets_a_persons_cap_over_http_and_on_their_page(
    api: Api, broker: BrokerProcess, s3_endpoint: S3Endpoint
) -> None:
    tenant = make_tenant(broker, s3_endpoint)
    boss = person(Client(broker.url), broker, tenant, "admin")
    ann = person(Client(broker.url), broker, tenant)
    path = f"/api/v1/admin/people/{ann.user_id}/device-cap"
    shown = api.call("GET", path, token=boss.access_token)
    assert shown.status == 200, shown.body
    assert shown.body == {"user_id": ann.user_id, "device_cap": None, "tenant_device_cap": None,
                          "default": 3, "effective": 3, "active_devices": 0}

    raised = api.call("POST", path, {"device_cap": 4}, token=boss.access_token)
    assert raised.status == 200, raised.body
    assert (raised.body["device_cap"], raised.body["effective"]) == (4, 4)
    for _ in range(4):
        enroll(api, broker, tenant, ann.user_id)
    assert capped(register(api, ann)), "four, then no more"
    assert api.call("GET", path, token=boss.access_token).body["active_devices"] == 4

    for bad in ({"device_cap": -1}, {"device_cap": 10_001}, {"device_cap": "4"}, {"cap": 4}):
        refused = api.call("POST", path, bad, token=boss.access_token)
        assert refused.status == 400, (bad, refused.body)
    assert api.call("POST", path, {"device_cap": 9}, token=ann.access_token).status == 403
    elsewhere = make_tenant(broker, s3_endpoint)
    outsider = person(Client(broker.url), broker, elsewhere, "admin")
    assert api.call("GET", path, token=outsider.access_token).status == 404
    assert api.call("GET", f"/api/v1/admin/people/{boss.user_id}-x/device-cap",
                    token=boss.access_token).status == 404

    page = f"/admin/people/{ann.user_id}"
    form = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "text/html"}
    html = api.call("GET", page, token=boss.access_token, headers={"Accept": "text/html"})
    text = html.raw.decode()
    assert "4 not revoked; they may have <strong>4</strong> (their own cap)" in text
    cleared = api.call("POST", page + "/device-cap", body=b"device_cap=",
                       headers=form, token=boss.access_token)
    assert cleared.status == 303, cleared.body
    again = api.call("GET", page + "?done=device_cap", token=boss.access_token,
                     headers={"Accept": "text/html"}).raw.decode()
    assert "The device cap is changed." in again
    assert "they may have <strong>3</strong> (the broker's default)" in again
    wrong = api.call("POST", page + "/device-cap", body=b"device_cap=lots",
                     headers=form, token=boss.access_token)
    assert wrong.status == 400
    assert "device_cap must be a whole number from 0 to 10000" in wrong.raw.decode()

    changes = [(e.actor, e.details) for e in audit_entries(broker, tenant.tenant_id)
               if e.action == "device.cap_set"]
    assert changes == [
        (f"user:{boss.user_id}", {"device_cap": 4, "scope": "person"}),
        (f"user:{boss.user_id}", {"device_cap": None, "scope": "person"}),
    ]


def test_enrollment_codes_respect_the_cap_and_stay_usable(
    api: Api, broker: BrokerProcess, tenant: Tenant
) -> None:
    first = enroll(api, broker, tenant)
    for _ in range(2):
        enroll(api, broker, tenant, first.user_id)
    code = enrollment_code(broker, tenant, first.user_id)

    refused = api.call("POST", "/api/v1/devices/enroll", {"code": code, "name": "fourth"})
    assert capped(refused), refused.body

    broker.admin("revoke-device", "--tenant", tenant.tenant_id, "--device", first.device_id)
    again = api.call("POST", "/api/v1/devices/enroll", {"code": code, "name": "fourth"})
    assert again.status == 201, "the refused code was not spent"


TIGHT_ENV = {
    "BUCKETREEL_DEVICE_CAP": "10",
    "BUCKETREEL_PERSON_REGISTRATIONS_PER_HOUR": "4",  # a burst of 2
    "BUCKETREEL_TENANT_REGISTRATIONS_PER_HOUR": "6",  # a burst of 3
    "BUCKETREEL_PERSON_CREATES_PER_HOUR": "30",  # a burst of 15
    "BUCKETREEL_TENANT_CREATES_PER_HOUR": "60",  # a burst of 30
}


@pytest.fixture(scope="module")
def tight(database_url: str, session_tmp: Path) -> Iterator[BrokerProcess]:
    """A broker with small person and tenant budgets, on the same database as `broker`."""
    with ExitStack() as stack:
        try:
            process = stack.enter_context(
                BrokerProcess(database_url, extra_env=TIGHT_ENV, log_dir=session_tmp / "logs")
            )
        except (MissingDependencyError, ProcessStartError, BrokerCommandError) as err:
            pytest.fail(f"the broker could not start: {err}", pytrace=False)
        yield process


def limited(reply: Reply, whose: str) -> bool:
    return (
        reply.status == 429
        and reply.body["error"] == "rate_limited"
        and reply.body["message"].startswith(whose)
        and int(reply.headers["Retry-After"]) > 0
    )


def test_registration_spends_a_person_and_a_tenant_budget(
    tight: BrokerProcess, s3_endpoint: S3Endpoint
) -> None:
    api = Api(tight.url)
    tenant = make_tenant(tight, s3_endpoint)
    ann, bob, cy = (person(Client(tight.url), tight, tenant) for _ in range(3))

    assert [register(api, ann).status for _ in range(2)] == [201, 201]
    over = register(api, ann)
    assert limited(over, "this person is over its person_registrations budget"), over.body
    assert register(api, bob).status == 201
    over = register(api, cy)
    assert limited(over, "this tenant is over its tenant_registrations budget"), over.body
    assert device_count(tight, tenant, ann.user_id) == 2
    assert device_count(tight, tenant, cy.user_id) == 0


def start(api: Api, device: Device) -> Reply:
    return api.call("POST", "/api/v1/recordings", {"started_at": now_iso()},
                    token=device.access_token)


def test_creates_are_spent_per_person_and_per_tenant(
    tight: BrokerProcess, s3_endpoint: S3Endpoint
) -> None:
    api = Api(tight.url)
    tenant = make_tenant(tight, s3_endpoint)
    first = enroll(api, tight, tenant)
    mine = [first, *(enroll(api, tight, tenant, first.user_id) for _ in range(2))]

    served = [start(api, mine[n % 3]).status for n in range(15)]  # 5 each: far under 60
    assert served == [201] * 15
    over = start(api, mine[0])
    assert limited(over, "this person (all their devices together) is over its "
                         "person_creates budget"), over.body

    other = enroll(api, tight, tenant)
    assert [start(api, other).status for _ in range(15)] == [201] * 15
    third = enroll(api, tight, tenant)
    over = start(api, third)
    assert limited(over, "this tenant (all its devices together) is over its "
                         "tenant_creates budget"), over.body

    elsewhere = enroll(api, tight, make_tenant(tight, s3_endpoint))
    assert start(api, elsewhere).status == 201, "another tenant is not affected"
