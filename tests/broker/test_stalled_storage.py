"""One tenant's stalled storage endpoint does not stall the broker for anyone else.

A tenant admin points `endpoint_url` at a server that accepts connections and never answers
(allowed on 127.0.0.1 by the suite's operator setting) and fires storage saves and
self-checks at it, from two tenants at once. Meanwhile another tenant's agent records a
segment (grant → PUT to moto → complete) and a manager signs in (password, then TOTP); both
must finish promptly. The stalled requests end too, within the self-check's deadline: the
extra ones at once with 429 and `Retry-After`.
"""

from __future__ import annotations

import secrets
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from broker import admin
from tests.identity.people import Client, Person, make_person, sign_in
from tests.support.api import (
    Api,
    Device,
    Operator,
    Reply,
    Tenant,
    enroll,
    put_with_grant,
    random_segment,
    start_recording,
)
from tests.support.broker import BrokerProcess
from tests.support.tarpit import Tarpit

STALLED_CALLS_PER_TENANT = 4
PROMPT = 10.0  # seconds the other tenant's whole flow may take, on a loaded machine
SELFCHECK_BOUND = 45.0  # the self-check's 20 s deadline, with room for a loaded machine


def stalled_tenant(broker: BrokerProcess) -> Person:
    name = f"tenant-{secrets.token_hex(4)}"
    tenant_id = Operator(broker).run(admin.create_tenant, name=name)["tenant_id"]
    return sign_in(Client(broker.url), make_person(broker, Tenant(tenant_id, name, "", "rec"),
                                                   "admin"))


def storage_on(pit: Tarpit) -> dict[str, Any]:
    return {
        "bucket": "stalled-bucket", "region": "us-east-1",
        "endpoint_url": f"http://{pit.url_host}:{pit.port}", "prefix": "rec",
        "access_key_id": "AKIAEXAMPLEKEY", "secret_access_key": "s" * 40,
        "accept_risk": True,
    }


def record_one_segment(api: Api, device: Device) -> float:
    started = time.monotonic()
    recording_id = start_recording(api, device)
    segment = random_segment()
    grant = api.call(
        "POST", f"/api/v1/recordings/{recording_id}/segments/0/upload", segment.declaration(),
        token=device.access_token,
    )
    assert grant.status == 200, grant.body
    assert put_with_grant(grant.body, segment.data).status == 200
    done = api.call(
        "POST", f"/api/v1/recordings/{recording_id}/segments/0/complete",
        token=device.access_token,
    )
    assert (done.status, done.body) == (200, {"state": "verified"})
    return time.monotonic() - started


def test_a_stalled_endpoint_under_one_tenant_leaves_the_others_unaffected(
    broker: BrokerProcess, api: Api, tenant: Tenant
) -> None:
    device = enroll(api, broker, tenant)
    manager = make_person(broker, tenant, "manager")
    admins = [stalled_tenant(broker), stalled_tenant(broker)]
    with Tarpit() as pit, ThreadPoolExecutor(max_workers=16) as pool:
        began = time.monotonic()
        stalled: list[Future[Reply]] = []
        for boss in admins:
            for n in range(STALLED_CALLS_PER_TENANT):
                method, path = ("PUT", "/api/v1/admin/storage") if n % 2 == 0 else (
                    "POST", "/api/v1/admin/storage/check")
                stalled.append(pool.submit(
                    Client(broker.url).call, method, path,
                    storage_on(pit) if method == "PUT" else None, token=boss.access_token,
                ))
        while pit.accepted < 2 and time.monotonic() - began < 10:
            time.sleep(0.05)
        assert pit.accepted >= 2, "the stalled self-checks never reached the tarpit"

        flow = record_one_segment(api, device)
        started = time.monotonic()
        signed_in = sign_in(Client(broker.url), manager)
        sign_in_took = time.monotonic() - started
        assert signed_in.access_token
        still_stalled = sum(not f.done() for f in stalled)

        replies = [f.result(timeout=SELFCHECK_BOUND) for f in stalled]
        all_done = time.monotonic() - began

    assert still_stalled > 0, "the stalled requests were not under way during the flow"
    assert flow < PROMPT, f"the other tenant's agent took {flow:.1f} s for one segment"
    assert sign_in_took < PROMPT, f"a manager's sign-in took {sign_in_took:.1f} s"
    assert all_done < SELFCHECK_BOUND, f"the stalled requests took {all_done:.1f} s"
    statuses = [r.status for r in replies]
    assert all(s in {200, 409, 429} for s in statuses), statuses
    busy = [r for r in replies if r.status == 429]
    assert busy, "one self-check per tenant at a time: the others must get 429"
    assert all(r.body["error"] == "rate_limited" and int(r.headers["Retry-After"]) >= 1
               for r in busy)
    saved = [r for r in replies if r.status == 200 and "check" in r.body]
    for reply in saved:  # the stalled check is reported, coarsely, after the deadline
        assert reply.body["check"]["can_write"] is False
