"""Every write path under concurrency, on SQLite and PostgreSQL: N parallel requests of one
tenant, and of several tenants at once, all succeed with the right answers, and each tenant's
audit chain stays whole (`admin audit-verify` intact, sequence numbers without a gap).

Before the chain lock came first in each transaction (README's lock order), PostgreSQL
deadlocked here: the audit entry's `FOR UPDATE` on the tenant row met the `FOR KEY SHARE`
the same transactions' foreign keys had taken, and victims were answered 500.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from broker import admin
from tests.identity.people import Client, Person, make_person, person, sign_in
from tests.support.api import (
    Device,
    Operator,
    Reply,
    Tenant,
    enrollment_code,
    make_tenant,
    now_iso,
    parallel,
    put_with_grant,
    random_segment,
)
from tests.support.broker import BrokerProcess
from tests.support.s3 import S3Endpoint

N = 8  # parallel requests per tenant and write path (one tenant)
N_EACH = 4  # per tenant, with several tenants at once
TENANTS = 3


def expect(replies: list[Reply], status: int, what: str) -> None:
    wrong = [(r.status, r.body) for r in replies if r.status != status]
    assert not wrong, f"{what}: {len(wrong)} of {len(replies)} not {status}: {wrong[:3]}"


@dataclass
class World:
    """One tenant's cast: an admin, a manager, employees, and what the phases made."""

    tenant: Tenant
    admin: Person
    manager: Person
    employees: list[Person]
    devices: list[Device] = field(default_factory=list)  # enrolled by code
    login_devices: list[str] = field(default_factory=list)  # enrolled by login (ids)
    recordings: list[str] = field(default_factory=list)


def client(broker: BrokerProcess) -> Client:
    return Client(broker.url)


def cast(broker: BrokerProcess, s3: S3Endpoint, n: int) -> World:
    tenant = make_tenant(broker, s3)
    api = client(broker)
    with ThreadPoolExecutor(max_workers=n) as pool:
        employees = list(pool.map(lambda _: make_person(broker, tenant), range(n)))
    return World(
        tenant, person(api, broker, tenant, "admin"), person(api, broker, tenant, "manager"),
        employees,
    )


def each(
    worlds: list[World], make: Callable[[World, int], Callable[[], Reply]], n: int
) -> list[Reply]:
    """Every world's n calls, all in one parallel wave; replies in world order."""
    return parallel([make(w, i) for w in worlds for i in range(n)])


def exercise(broker: BrokerProcess, worlds: list[World], n: int) -> None:
    """Each write path in a parallel wave over every world; checks each answer."""
    wanted = [(w, i) for w in worlds for i in range(n)]
    with ThreadPoolExecutor(max_workers=len(wanted)) as pool:
        issued = pool.map(
            lambda wi: enrollment_code(broker, wi[0].tenant, wi[0].employees[wi[1]].user_id),
            wanted,
        )
        codes = {(w.tenant.tenant_id, i): code for (w, i), code in zip(wanted, issued, strict=True)}

    # enrollment by code
    def enroll(w: World, i: int) -> Callable[[], Reply]:
        code = codes[(w.tenant.tenant_id, i)]
        return lambda: client(broker).call(
            "POST", "/api/v1/devices/enroll", {"code": code, "name": f"ws-{i}"}
        )

    replies = each(worlds, enroll, n)
    expect(replies, 201, "enrollment by code")
    for k, w in enumerate(worlds):
        for i, r in enumerate(replies[k * n:(k + 1) * n]):
            w.devices.append(Device(
                w.tenant, w.employees[i].user_id, r.body["device_id"], r.body["access_token"],
                r.body["refresh_token"],
            ))
    # login (password, then the TOTP enrollment) of every employee at once
    people = [p for w in worlds for p in w.employees]
    with ThreadPoolExecutor(max_workers=len(people)) as pool:
        list(pool.map(lambda p: sign_in(client(broker), p), people))

    # enrollment by login
    def register(w: World, i: int) -> Callable[[], Reply]:
        token = w.employees[i].access_token
        return lambda: client(broker).call(
            "POST", "/api/v1/devices/register", {"name": f"laptop-{i}"}, token=token
        )

    replies = each(worlds, register, n)
    expect(replies, 201, "enrollment by login")
    for k, w in enumerate(worlds):
        w.login_devices = [r.body["device_id"] for r in replies[k * n:(k + 1) * n]]

    # token refresh: devices' and people's
    def refresh_device(w: World, i: int) -> Callable[[], Reply]:
        token = w.devices[i].refresh_token
        return lambda: client(broker).call(
            "POST", "/api/v1/devices/token", {"refresh_token": token}
        )

    def refresh_person(w: World, i: int) -> Callable[[], Reply]:
        token = w.employees[i].refresh_token
        return lambda: client(broker).call("POST", "/api/v1/auth/token", {"refresh_token": token})

    replies = parallel(
        [refresh_device(w, i) for w in worlds for i in range(n)]
        + [refresh_person(w, i) for w in worlds for i in range(n)]
    )
    expect(replies, 200, "token refresh")
    fresh = iter(replies[: len(worlds) * n])
    for w in worlds:
        for i, d in enumerate(w.devices):
            body = next(fresh).body
            assert body["device_id"] == d.device_id
            w.devices[i] = Device(
                w.tenant, d.user_id, d.device_id, body["access_token"], body["refresh_token"]
            )

    # recording start
    def start(w: World, i: int) -> Callable[[], Reply]:
        token = w.devices[i].access_token
        return lambda: client(broker).call(
            "POST", "/api/v1/recordings", {"started_at": now_iso()}, token=token
        )

    replies = each(worlds, start, n)
    expect(replies, 201, "recording start")
    for k, w in enumerate(worlds):
        w.recordings = [r.body["recording_id"] for r in replies[k * n:(k + 1) * n]]
    assert len({r for w in worlds for r in w.recordings}) == len(worlds) * n

    # upload grant (then the agent's PUT, straight to the bucket)
    segments = {(w.tenant.tenant_id, i): random_segment(2048) for w in worlds for i in range(n)}

    def segment_path(w: World, i: int) -> str:
        return f"/api/v1/recordings/{w.recordings[i]}/segments/0"

    def grant(w: World, i: int) -> Callable[[], Reply]:
        token, path = w.devices[i].access_token, segment_path(w, i)
        declared = segments[(w.tenant.tenant_id, i)].declaration()
        return lambda: client(broker).call("POST", path + "/upload", declared, token=token)

    grants = each(worlds, grant, n)
    expect(grants, 200, "upload grant")
    for k, w in enumerate(worlds):
        for i in range(n):
            data = segments[(w.tenant.tenant_id, i)].data
            assert put_with_grant(grants[k * n + i].body, data).status == 200

    # completion
    def complete(w: World, i: int) -> Callable[[], Reply]:
        token, path = w.devices[i].access_token, segment_path(w, i)
        return lambda: client(broker).call("POST", path + "/complete", token=token)

    replies = each(worlds, complete, n)
    expect(replies, 200, "completion")
    assert all(r.body["state"] == "verified" for r in replies), replies[0].body

    # gap report
    def gap(w: World, i: int) -> Callable[[], Reply]:
        token = w.devices[i].access_token
        path = f"/api/v1/recordings/{w.recordings[i]}/gaps"
        return lambda: client(broker).call(
            "POST", path, {"seqs": [1], "reason": "refused"}, token=token
        )

    replies = each(worlds, gap, n)
    assert all(r.status in (200, 201) for r in replies), [r.body for r in replies][:3]
    assert all(len(r.body["gaps"]) == 1 for r in replies)

    # view URL (the tenant's admin, every recording at once)
    def view(w: World, i: int) -> Callable[[], Reply]:
        token, path = w.admin.access_token, segment_path(w, i)
        return lambda: client(broker).call("POST", path + "/view", token=token)

    replies = each(worlds, view, n)
    expect(replies, 200, "view URL")
    assert all(r.body["url"].startswith("http") for r in replies)

    # finish
    def finish(w: World, i: int) -> Callable[[], Reply]:
        token = w.devices[i].access_token
        path = f"/api/v1/recordings/{w.recordings[i]}/finish"
        return lambda: client(broker).call("POST", path, token=token)

    replies = each(worlds, finish, n)
    expect(replies, 200, "finish")
    assert all(r.body["state"] == "finished" for r in replies)

    # admin changes, mixed in one wave: policies, assignments, device revocations
    half = n // 2

    def change(w: World, i: int) -> Callable[[], Reply]:
        api, token = client(broker), w.admin.access_token
        if i < half:
            return lambda: api.call(
                "PATCH", "/api/v1/admin/policy", {"fps": 1.0 + i}, token=token
            )
        employee = w.employees[i].user_id
        return lambda: api.call(
            "POST", "/api/v1/admin/assignments",
            {"manager_id": w.manager.user_id, "employee_id": employee}, token=token,
        )

    replies = each(worlds, change, n)
    for k in range(len(worlds)):
        expect(replies[k * n:k * n + half], 200, "policy change")
        expect(replies[k * n + half:(k + 1) * n], 201, "manager assignment")

    def revoke(w: World, i: int) -> Callable[[], Reply]:
        api, token, device = client(broker), w.admin.access_token, w.login_devices[i]
        return lambda: api.call("POST", f"/api/v1/admin/devices/{device}/revoke", token=token)

    replies = each(worlds, revoke, n)
    expect(replies, 200, "device revocation")


def check_chain(broker: BrokerProcess, w: World, n: int, *, cli: bool = True) -> None:
    """`admin audit-verify` says intact (the command, or `cli=False` the same check in this
    process); seqs run 1..count; each write is in the chain once."""
    if cli:
        verdict = json.loads(broker.cli("admin", "audit-verify", "--tenant", w.tenant.tenant_id))
        assert verdict["intact"] is True, verdict
        assert verdict["head"]["seq"] == verdict["entries"], verdict  # no gap, nothing after
    else:
        verdict = Operator(broker).run(chain_problems, tenant_id=w.tenant.tenant_id)
        assert verdict["problems"] == [], verdict
    entries = audit_actions(broker, w.tenant.tenant_id)
    seqs = [seq for seq, _ in entries]
    assert seqs == list(range(1, len(seqs) + 1))
    counts = Counter(action for _, action in entries)
    half = n // 2
    for action, wanted in {
        "device.enroll": 2 * n, "recording.start": n, "segment.grant": n,
        "segment.verified": n, "recording.gap": n, "segment.view_url": n,
        "recording.finish": n, "policy.set": half, "role.assign": half, "device.revoke": n,
    }.items():
        assert counts[action] == wanted, (action, counts)
    assert counts["auth.mfa_enroll"] == n + 2  # every employee, the admin and the manager


async def chain_problems(ctx: admin.AdminContext, *, tenant_id: str) -> dict[str, Any]:
    from broker.audit import log as audit
    from broker.db.scope import TenantScope

    async with ctx.db.transaction() as conn:
        return {"problems": (await audit.verify_chain(TenantScope(conn, tenant_id))).problems}


def audit_actions(broker: BrokerProcess, tenant_id: str) -> list[tuple[int, str]]:
    from tests.identity.people import audit_entries

    return [(e.seq, e.action) for e in audit_entries(broker, tenant_id)]


def test_parallel_writes_of_one_tenant_all_succeed_and_keep_the_chain(
    broker: BrokerProcess, s3_endpoint: S3Endpoint
) -> None:
    world = cast(broker, s3_endpoint, N)
    exercise(broker, [world], N)
    check_chain(broker, world, N)


def test_parallel_writes_of_several_tenants_all_succeed_and_keep_each_chain(
    broker: BrokerProcess, s3_endpoint: S3Endpoint
) -> None:
    with ThreadPoolExecutor(max_workers=TENANTS) as pool:
        worlds = list(pool.map(lambda _: cast(broker, s3_endpoint, N_EACH), range(TENANTS)))
    exercise(broker, worlds, N_EACH)
    for k, w in enumerate(worlds):
        check_chain(broker, w, N_EACH, cli=k == 0)
    operator = Operator(broker)  # and the chains stayed apart
    listed = operator.run(admin.devices, tenant=worlds[0].tenant.tenant_id)["devices"]
    assert {d["device_id"] for d in listed} == (
        {d.device_id for d in worlds[0].devices} | set(worlds[0].login_devices)
    )


def test_one_refresh_token_sent_n_times_at_once_works_once_and_ends_its_family(
    broker: BrokerProcess, s3_endpoint: S3Endpoint
) -> None:
    """A replayed token, raced: one request gets the next pair, every other one is refused
    (401, never 500), the family ends (the winner's new token too), and the chain holds."""
    tenant = make_tenant(broker, s3_endpoint)
    api = client(broker)
    employee = person(api, broker, tenant)

    def refresh(path: str, token: str) -> Reply:
        return client(broker).call("POST", path, {"refresh_token": token})

    code = enrollment_code(broker, tenant, employee.user_id)
    device = api.call("POST", "/api/v1/devices/enroll", {"code": code, "name": "ws"}).body
    for path, token in (
        ("/api/v1/devices/token", device["refresh_token"]),
        ("/api/v1/auth/token", employee.refresh_token),
    ):
        replies = parallel([partial(refresh, path, token) for _ in range(N)])
        statuses = Counter(r.status for r in replies)
        assert statuses == {200: 1, 401: N - 1}, (path, statuses)
        winner = next(r for r in replies if r.status == 200).body["refresh_token"]
        after = api.call("POST", path, {"refresh_token": winner})
        assert after.status == 401, (path, after.body)  # the family has ended
    actions = Counter(action for _, action in audit_actions(broker, tenant.tenant_id))
    assert actions["device.refresh_reuse"] >= 1
    assert actions["user.refresh_reuse"] >= 1
    problems = Operator(broker).run(chain_problems, tenant_id=tenant.tenant_id)["problems"]
    assert problems == []
