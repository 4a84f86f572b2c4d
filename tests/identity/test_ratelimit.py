"""Failed logins are limited per account and per client address, in the database."""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from broker.auth.ratelimit import ACCOUNT_DELAY_CAP
from broker.db.database import Database
from broker.db.schema import login_failures
from broker.errors import RateLimited, Unauthenticated
from broker.services import Services
from tests.identity.conftest import IDENTITY_ENV
from tests.identity.people import Client, in_process, login, make_person, mfa
from tests.support.api import PASSWORD, Tenant
from tests.support.broker import BrokerProcess

ACCOUNT_LIMIT = 5  # BUCKETREEL_LOGIN_MAX_FAILURES default
CLIENT_LIMIT = int(IDENTITY_ENV["BUCKETREEL_LOGIN_CLIENT_MAX_FAILURES"])
WINDOW = 900


def test_the_limit_per_account_and_client_engages_with_429_and_retry_after_and_releases(
    broker: BrokerProcess, tenant: Tenant
) -> None:
    """The hard limit is per (account, client address): strangers elsewhere only slow the
    account down (tests/identity/test_lockout.py)."""
    person = make_person(broker, tenant)
    client = Client(broker.url)
    for _ in range(ACCOUNT_LIMIT):
        assert login(client, person, "not the password!").status == 401

    limited = login(client, person)  # even the right password, from that client

    assert (limited.status, limited.body["error"]) == (429, "rate_limited")
    assert ACCOUNT_DELAY_CAP < int(limited.headers["Retry-After"]) <= WINDOW + 1

    async def later(services: Services) -> str:
        step = await services.login.login(tenant.name, person.email, PASSWORD, client.address)
        return step.mfa

    released = datetime.now(UTC) + timedelta(seconds=WINDOW + 1)
    assert in_process(broker, lambda: released, later) == "enroll"


def test_a_burst_of_parallel_guesses_gets_no_more_than_the_limit(
    broker: BrokerProcess, tenant: Tenant
) -> None:
    """Each guess is counted before its (slow) password check, atomically with the count: a
    burst in parallel gets exactly `limit` checks, not one per request in flight."""
    person = make_person(broker, tenant)
    client = Client(broker.url)
    burst = 4 * ACCOUNT_LIMIT
    with ThreadPoolExecutor(burst) as pool:
        statuses = list(pool.map(
            lambda _: login(client, person, "not the password!").status, range(burst)
        ))
    assert sorted(statuses) == [401] * ACCOUNT_LIMIT + [429] * (burst - ACCOUNT_LIMIT)
    assert login(client, person).status == 429, "even the right password now, from there"


def test_a_burst_from_many_addresses_gets_no_more_than_the_limit(
    broker: BrokerProcess, tenant: Tenant
) -> None:
    """The same across addresses, on the account's slowdown (a clock of the test's own: the
    burst is at one instant, so past the limit each attempt has to wait)."""
    person = make_person(broker, tenant)
    at = datetime.now(UTC) + timedelta(hours=2)
    burst = 4 * ACCOUNT_LIMIT

    async def use(services: Services) -> list[str]:
        async def guess(n: int) -> str:
            try:
                await services.login.login(
                    tenant.name, person.email, "not the password!", f"10.66.0.{n}"
                )
            except RateLimited:
                return "limited"
            except Unauthenticated:
                return "checked"
            return "in"

        return list(await asyncio.gather(*(guess(n) for n in range(burst))))

    outcomes = in_process(broker, lambda: at, use)
    assert sorted(outcomes) == ["checked"] * ACCOUNT_LIMIT + ["limited"] * (burst - ACCOUNT_LIMIT)


def test_parallel_wrong_codes_get_no_more_than_the_limit(
    broker: BrokerProcess, tenant: Tenant
) -> None:
    person = make_person(broker, tenant)
    client = Client(broker.url)
    challenges = []
    for _ in range(3 * ACCOUNT_LIMIT):  # right passwords: none of these counts as a failure
        step = login(client, person)
        assert step.status == 200, step.body
        challenges.append(step.body["challenge"])
    with ThreadPoolExecutor(len(challenges)) as pool:
        statuses = list(pool.map(
            lambda challenge: mfa(client, challenge, "000000").status, challenges
        ))
    assert sorted(statuses) == [401] * ACCOUNT_LIMIT + [429] * (len(challenges) - ACCOUNT_LIMIT)


def test_wrong_codes_count_against_the_account_too(
    broker: BrokerProcess, tenant: Tenant
) -> None:
    person = make_person(broker, tenant)
    at = datetime.now(UTC) + timedelta(hours=3)

    async def use(services: Services) -> None:
        for n in range(ACCOUNT_LIMIT):  # each from another address
            step = await services.login.login(tenant.name, person.email, PASSWORD, f"10.55.0.{n}")
            try:
                await services.login.mfa(step.challenge, "000000", f"10.55.0.{n}")
            except Unauthenticated:
                continue
            raise AssertionError("a wrong code was accepted")
        try:
            await services.login.login(tenant.name, person.email, PASSWORD, "10.55.1.1")
        except RateLimited:
            return
        raise AssertionError("the account was not slowed down by wrong codes")

    in_process(broker, lambda: at, use)


def test_client_limit_engages_across_accounts(broker: BrokerProcess, tenant: Tenant) -> None:
    client = Client(broker.url)
    for i in range(CLIENT_LIMIT):
        reply = client.call(
            "POST", "/api/v1/auth/login",
            {"tenant": tenant.name, "email": f"guess{i}@example.test", "password": "x" * 12},
        )
        assert reply.status == 401

    person = make_person(broker, tenant)
    limited = login(client, person)
    elsewhere = login(Client(broker.url), person)

    assert limited.status == 429
    assert int(limited.headers["Retry-After"]) > 0
    assert elsewhere.status == 200, "another address is not affected"


def test_client_addresses_are_kept_only_as_hmacs(broker: BrokerProcess, tenant: Tenant) -> None:
    client = Client(broker.url)
    person = make_person(broker, tenant)
    assert login(client, person, "not the password!").status == 401

    async def rows() -> list[str]:
        db = Database.from_url(broker.database_url)
        try:
            async with db.transaction() as conn:
                result = await conn.execute(select(login_failures.c.key_hash))
                return [r.key_hash for r in result]
        finally:
            await db.close()

    hashes = asyncio.run(rows())
    assert hashes
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes)
    assert not any(client.address in h or person.email in h for h in hashes)
