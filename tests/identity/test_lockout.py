"""Account lockout is no weapon: strangers' wrong passwords slow an account, never lock it.

Five wrong passwords from anywhere once locked any account for 15 minutes, the owner's right
password included. Now the hard limit is per (account, client address); per account a
slowdown (a small, growing Retry-After, at most a minute); a browser that signed in to the
account before (its known-device cookie: signed, HttpOnly, Secure, SameSite=Strict) is not
slowed at all, so the owner's right password reaches the code step during an attack; and the
person (at their next sign-in) and the tenant's admins (the audit log, the broker's log) see
the attack.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from broker.auth.ratelimit import ACCOUNT_DELAY_CAP
from broker.db.database import Database
from broker.db.schema import users
from broker.db.scope import TenantScope
from broker.errors import RateLimited, Unauthenticated
from broker.services import Services
from tests.identity.people import (
    Client,
    Clock,
    Person,
    audit_entries,
    in_process,
    login,
    make_person,
    mfa,
)
from tests.support.api import PASSWORD, Reply, Tenant
from tests.support.broker import BrokerProcess

LIMIT = 5  # BUCKETREEL_LOGIN_MAX_FAILURES default
KNOWN = "bucketreel_known"
WRONG = "not the password!"


def set_cookie(reply: Reply, name: str) -> str:
    """The Set-Cookie line for `name` (aiohttp sends Max-Age, no Expires: no commas)."""
    for part in reply.headers.get("Set-Cookie", "").split(", "):
        if part.startswith(name + "="):
            return part
    raise AssertionError(f"no {name} cookie in {reply.headers.get('Set-Cookie')!r}")


def cookie_value(reply: Reply) -> str:
    return set_cookie(reply, KNOWN).split(";")[0].split("=", 1)[1]


def first_sign_in(browser: Client, person: Person) -> Reply:
    """The person's first full sign-in from `browser` (TOTP enrolled on the way)."""
    step = login(browser, person)
    assert step.status == 200, step.body
    person.secret = parse_qs(urlsplit(step.body["provisioning_uri"]).query)["secret"][0]
    done = mfa(browser, step.body["challenge"], person.next_code())
    assert done.status == 200, done.body
    return done


def sign_in_with(browser: Client, person: Person, cookie: str) -> Reply:
    """Both steps from `browser`, sending its known-device cookie."""
    headers = {"Cookie": f"{KNOWN}={cookie}"}
    step = browser.call(
        "POST", "/api/v1/auth/login",
        {"tenant": person.tenant.name, "email": person.email, "password": PASSWORD},
        headers=headers,
    )
    assert step.status == 200, step.body
    return browser.call(
        "POST", "/api/v1/auth/mfa",
        {"challenge": step.body["challenge"], "code": person.next_code()}, headers=headers,
    )


def test_the_known_device_cookie_is_httponly_secure_and_strict(
    broker: BrokerProcess, tenant: Tenant
) -> None:
    person = make_person(broker, tenant)
    line = set_cookie(first_sign_in(Client(broker.url), person), KNOWN).lower()
    assert "httponly" in line, line
    assert "secure" in line, line
    assert "samesite=strict" in line, line
    assert "path=/" in line
    assert person.user_id in line, "it names its account (signed)"


def test_strangers_cannot_keep_the_owner_out_of_a_browser_that_signed_in_before(
    broker: BrokerProcess, tenant: Tenant
) -> None:
    person = make_person(broker, tenant)
    browser = Client(broker.url)
    cookie = cookie_value(first_sign_in(browser, person))

    statuses = [login(Client(broker.url), person, WRONG).status for _ in range(3 * LIMIT)]
    assert statuses[:LIMIT] == [401] * LIMIT
    assert 429 in statuses[LIMIT:], "past the limit the account is slowed down"

    done = sign_in_with(browser, person, cookie)  # during the attack
    assert done.status == 200, done.body
    seen = done.body["failed_sign_ins"]
    assert seen["count"] == statuses.count(401), seen
    assert datetime.fromisoformat(seen["last_at"]) <= datetime.now(UTC)

    under_attack = [
        e for e in audit_entries(broker, tenant.tenant_id)
        if e.action == "auth.account_under_attack" and e.target == person.user_id
    ]
    assert len(under_attack) == 1, "one entry when the limit is reached, not one per guess"
    assert under_attack[0].details["failed_since_last_sign_in"] == LIMIT
    assert f"account {person.user_id}" in broker.log_tail(5000)

    assert failed_logins(broker, person) == 0, "shown once, then reset"


def failed_logins(broker: BrokerProcess, person: Person) -> int:
    async def read() -> int:
        db = Database.from_url(broker.database_url)
        try:
            async with db.transaction() as conn:
                row = await TenantScope(conn, person.tenant.tenant_id).one(
                    users, users.c.id == person.user_id
                )
                assert row is not None
                return int(row.failed_logins)
        finally:
            await db.close()

    return asyncio.run(read())


def test_only_the_accounts_own_valid_cookie_exempts(
    broker: BrokerProcess, tenant: Tenant
) -> None:
    ann, bob = make_person(broker, tenant), make_person(broker, tenant)
    anns = cookie_value(first_sign_in(Client(broker.url), ann))
    bobs = cookie_value(first_sign_in(Client(broker.url), bob))
    clock = Clock(datetime.now(UTC) + timedelta(hours=1))

    async def use(services: Services) -> str:
        async def right(address: str, cookie: str | None) -> None:
            await services.login.login(
                tenant.name, bob.email, PASSWORD, address, known_device=cookie
            )

        for n in range(LIMIT):
            with pytest.raises(Unauthenticated):
                await services.login.login(tenant.name, bob.email, WRONG, f"10.88.0.{n}")
        for cookie in (None, anns, bobs[:-1] + ("0" if bobs[-1] != "0" else "1")):
            with pytest.raises(RateLimited):
                await right("10.88.1.1", cookie)
        step = await services.login.login(
            tenant.name, bob.email, PASSWORD, "10.88.1.1", known_device=bobs
        )
        return step.mfa

    assert in_process(broker, clock, use) == "totp"


def test_the_account_is_slowed_down_not_locked(broker: BrokerProcess, tenant: Tenant) -> None:
    """On a clock of the test's own: the slowdown's schedule, exactly."""
    person = make_person(broker, tenant)
    clock = Clock(datetime.now(UTC) + timedelta(hours=1))
    addresses = iter(f"10.77.{n // 250}.{n % 250}" for n in range(1000))

    async def use(services: Services) -> list[int]:
        async def attempt(password: str) -> int:
            """0: reached the code step; -1: wrong password; else the Retry-After."""
            try:
                await services.login.login(tenant.name, person.email, password, next(addresses))
            except Unauthenticated:
                return -1
            except RateLimited as limited:
                return limited.retry_after
            return 0

        seen = [await attempt(WRONG) for _ in range(LIMIT)]
        seen.append(await attempt(PASSWORD))  # at the same instant: wait 1 s
        clock.now += timedelta(seconds=1)
        seen.append(await attempt(PASSWORD))  # then it passes
        seen.append(await attempt(WRONG))  # a sixth failure: 2 s after it
        clock.now += timedelta(seconds=1)
        seen.append(await attempt(PASSWORD))
        clock.now += timedelta(seconds=1)
        seen.append(await attempt(PASSWORD))
        for _ in range(20):  # a stranger guessing on as fast as allowed
            clock.now += timedelta(seconds=ACCOUNT_DELAY_CAP)
            assert await attempt(WRONG) == -1
        seen.append(await attempt(PASSWORD))  # capped: never more than a minute
        return seen

    seen = in_process(broker, clock, use)
    assert seen[:LIMIT] == [-1] * LIMIT
    assert seen[LIMIT:] == [1, 0, -1, 1, 0, ACCOUNT_DELAY_CAP], seen


def test_the_hard_limit_is_per_account_and_client(broker: BrokerProcess, tenant: Tenant) -> None:
    person = make_person(broker, tenant)
    stranger = Client(broker.url)
    for _ in range(LIMIT):
        assert login(stranger, person, WRONG).status == 401
    walled = login(stranger, person)
    assert walled.status == 429, walled.body
    assert int(walled.headers["Retry-After"]) > ACCOUNT_DELAY_CAP, "a wall for that client"


def test_signing_out_everywhere_forgets_the_known_browsers(
    broker: BrokerProcess, tenant: Tenant
) -> None:
    person = make_person(broker, tenant)
    browser = Client(broker.url)
    done = first_sign_in(browser, person)
    cookie = cookie_value(done)
    out = browser.call("POST", "/api/v1/auth/sign-out-everywhere",
                       token=done.body["access_token"])
    assert out.status == 200, out.body
    clock = Clock(datetime.now(UTC) + timedelta(hours=1))

    async def use(services: Services) -> None:
        for n in range(LIMIT):
            with pytest.raises(Unauthenticated):
                await services.login.login(tenant.name, person.email, WRONG, f"10.99.0.{n}")
        with pytest.raises(RateLimited):
            await services.login.login(
                tenant.name, person.email, PASSWORD, "10.99.1.1", known_device=cookie
            )

    in_process(broker, clock, use)
