"""People signing in through the HTTP API, as a browser or a script would.

TOTP codes are made with pyotp from the secret in the provisioning URI the broker hands out.
The broker process runs on real time, so codes are made for "now"; each step is accepted once
per person, so a person can sign in again in the same 30 s only with the next step's code
(`Person.next_code`). Tests that need other instants use the services in-process with a clock
of their own (`in_process`), against the same database.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import jwt
import pyotp

from broker.auth.sessions import SessionTokens
from broker.db.database import Database
from broker.errors import Unauthenticated
from broker.services import Services, build_services
from broker.settings import Settings
from tests.support.api import (
    PASSWORD,
    Api,
    Device,
    Reply,
    Tenant,
    enroll,
    make_tenant,
    put_with_grant,
    random_segment,
    start_recording,
)
from tests.support.broker import BrokerProcess
from tests.support.s3 import S3Endpoint

T = TypeVar("T")


class Client(Api):
    """An API client with a client address of its own (sent as X-Forwarded-For)."""

    def __init__(self, base_url: str, address: str | None = None) -> None:
        super().__init__(base_url)
        self.address = address or "10.{}.{}.{}".format(*secrets.token_bytes(3))

    def call(self, method: str, path: str, payload: Any = None, **kwargs: Any) -> Reply:
        headers = dict(kwargs.pop("headers", None) or {})
        headers.setdefault("X-Forwarded-For", self.address)
        return super().call(method, path, payload, headers=headers, **kwargs)


def step_now() -> int:
    return int(time.time()) // 30


@dataclass
class Person:
    tenant: Tenant
    user_id: str
    email: str
    role: str
    secret: str = ""
    last_step: int = -1
    access_token: str = ""
    refresh_token: str = ""
    recovery_codes: list[str] = field(default_factory=list)

    def next_code(self) -> str:
        """A code this person has not used yet, valid now (this step or the next)."""
        step = max(step_now(), self.last_step + 1)
        if step > step_now() + 1:
            raise RuntimeError("a person can sign in at most twice per 30 s; use another one")
        self.last_step = step
        return pyotp.TOTP(self.secret).generate_otp(step)


def login(api: Api, person: Person, password: str = PASSWORD) -> Reply:
    return api.call(
        "POST", "/api/v1/auth/login",
        {"tenant": person.tenant.name, "email": person.email, "password": password},
    )


def signin_token(api: Api) -> str:
    """The sign-in page's double-submit token, as a browser gets it: the `bucketreel_signin`
    cookie of `GET /signin` (the page's forms carry the same value)."""
    page = api.call("GET", "/signin")
    found = re.search(r"bucketreel_signin=([^;,\s]+)", page.headers.get("Set-Cookie", ""))
    assert page.status == 200, page.headers
    assert found, page.headers
    return found[1]


def signin_headers(api: Api) -> dict[str, str]:
    """What a browser's sign-in page sends with `cookie: true`: the cookie and the token."""
    token = signin_token(api)
    return {"Cookie": f"bucketreel_signin={token}", "X-CSRF-Token": token}


def mfa(api: Api, challenge: str, code: str, **extra: Any) -> Reply:
    headers = signin_headers(api) if extra.get("cookie") else None
    return api.call(
        "POST", "/api/v1/auth/mfa", {"challenge": challenge, "code": code, **extra},
        headers=headers,
    )


def make_person(broker: BrokerProcess, tenant: Tenant, role: str = "employee") -> Person:
    """A user made by the operator; not signed in yet."""
    from broker import admin
    from tests.support.api import Operator

    email = f"{role}-{secrets.token_hex(5)}@example.test"
    user_id = Operator(broker).run(
        admin.create_user, tenant=tenant.tenant_id, email=email, role=role, password=PASSWORD
    )["user_id"]
    return Person(tenant, user_id, email, role)


def sign_in(api: Api, person: Person) -> Person:
    """First login: enroll TOTP from the provisioning URI, keep the session and recovery codes."""
    step = login(api, person)
    assert step.status == 200, step.body
    assert step.body["mfa"] == "enroll", step.body
    query = parse_qs(urlsplit(step.body["provisioning_uri"]).query)
    person.secret = query["secret"][0]
    done = mfa(api, step.body["challenge"], person.next_code())
    assert done.status == 200, done.body
    person.access_token = done.body["access_token"]
    person.refresh_token = done.body["refresh_token"]
    person.recovery_codes = done.body["recovery_codes"]
    return person


def login_again(api: Api, person: Person) -> Reply:
    """Both steps again for an enrolled person; returns the MFA reply."""
    step = login(api, person)
    assert step.status == 200, step.body
    assert step.body["mfa"] == "totp"
    return mfa(api, step.body["challenge"], person.next_code())


def person(api: Api, broker: BrokerProcess, tenant: Tenant, role: str = "employee") -> Person:
    return sign_in(api, make_person(broker, tenant, role))


def in_process(
    broker: BrokerProcess, clock: Callable[[], datetime], use: Callable[[Services], Awaitable[T]]
) -> T:
    """Run the broker's own services in this process, on the same database, at `clock`'s time."""
    settings = Settings.from_env({**broker.env, "BUCKETREEL_MIGRATE_ON_START": "0"})

    async def go() -> T:
        db = Database.from_url(settings.database_url)
        try:
            return await use(build_services(settings, db, clock))
        finally:
            await db.close()

    return asyncio.run(go())


def audit_entries(broker: BrokerProcess, tenant_id: str) -> list[Any]:
    """The tenant's audit log, read with the broker's own audit module."""
    from broker.audit import log as audit
    from broker.db.scope import TenantScope

    async def read() -> list[Any]:
        db = Database.from_url(broker.database_url)
        try:
            async with db.transaction() as conn:
                return await audit.entries(TenantScope(conn, tenant_id))
        finally:
            await db.close()

    return asyncio.run(read())


@dataclass
class Org:
    """One tenant's people and a recording with a verified segment, plus another tenant."""

    api: Client
    tenant: Tenant
    admin: Person
    manager: Person
    employee: Person  # assigned to the manager
    other_employee: Person  # not assigned
    device: Device  # the employee's workstation
    recording_id: str
    other_recording_id: str
    outsider: Person  # an admin of another tenant
    outsider_device: Device


def verified_recording(api: Api, device: Device) -> str:
    recording_id = start_recording(api, device)
    segment = random_segment(4096)
    path = f"/api/v1/recordings/{recording_id}/segments/0"
    grant = api.call("POST", path + "/upload", segment.declaration(), token=device.access_token)
    assert grant.status == 200, grant.body
    assert put_with_grant(grant.body, segment.data).status == 200
    done = api.call("POST", path + "/complete", token=device.access_token)
    assert done.status == 200, done.body
    return recording_id


def make_org(broker: BrokerProcess, s3: S3Endpoint) -> Org:
    from broker import admin
    from tests.support.api import Operator

    api = Client(broker.url)
    tenant = make_tenant(broker, s3)
    people = {role: person(api, broker, tenant, role) for role in ("admin", "manager")}
    employee = person(api, broker, tenant)
    other = person(api, broker, tenant)
    Operator(broker).run(
        admin.assign, tenant=tenant.tenant_id, manager=people["manager"].email,
        employee=employee.email,
    )
    device = enroll(api, broker, tenant, employee.user_id)
    other_device = enroll(api, broker, tenant, other.user_id)
    outside = make_tenant(broker, s3)
    return Org(
        api, tenant, people["admin"], people["manager"], employee, other, device,
        verified_recording(api, device), verified_recording(api, other_device),
        person(api, broker, outside, "admin"), enroll(api, broker, outside),
    )


class Clock:
    """A clock the test sets (the broker's services run on it, `in_process`)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def refresh_past_the_end(
    refresh: Callable[[str], Awaitable[SessionTokens]],
    token: str,
    clock: Clock,
    *,
    end: datetime,
    every: timedelta,
) -> None:
    """Refresh a session every `every` up to a minute before its absolute `end`: each works,
    the last one's tokens expire by `end`, and past `end` refreshing is refused."""
    while clock.now + every < end - timedelta(minutes=1):
        clock.now += every
        token = (await refresh(token)).refresh_token
    clock.now = end - timedelta(minutes=1)
    last = await refresh(token)
    assert last.expires_in <= 60, "no access token outlives the session"
    assert last.refresh_expires_in <= 60, "nor a refresh token"
    claims = jwt.decode(last.access_token, options={"verify_signature": False})
    assert claims["exp"] <= end.timestamp()
    clock.now = end + timedelta(seconds=1)
    try:
        await refresh(last.refresh_token)
    except Unauthenticated:
        return
    raise AssertionError("a session was refreshed past its absolute lifetime")
