"""Passwords and the two-step login with mandatory TOTP."""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, update

from broker import admin
from broker.db.database import Database
from broker.db.schema import users
from broker.errors import InvalidInput, Unauthenticated
from broker.services import Services
from tests.identity.people import (
    Client,
    audit_entries,
    in_process,
    login,
    login_again,
    make_person,
    mfa,
    sign_in,
)
from tests.support.api import PASSWORD, Operator, Tenant
from tests.support.broker import BrokerProcess


def user_row(broker: BrokerProcess, user_id: str) -> dict[str, object]:
    async def read() -> dict[str, object]:
        db = Database.from_url(broker.database_url)
        try:
            async with db.transaction() as conn:
                row = (await conn.execute(select(users).where(users.c.id == user_id))).one()
                return dict(row._mapping)
        finally:
            await db.close()

    import asyncio

    return asyncio.run(read())


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short-pass1", "at least 12 characters"),
        ("password1234", "too common"),
        ("Qwertyuiop12", "too common"),
        ("aaaaaaaaaaaaaaaa", "too common or too simple"),
    ],
)
def test_weak_passwords_are_refused_with_a_clear_message(
    broker: BrokerProcess, tenant: Tenant, password: str, reason: str
) -> None:
    with pytest.raises(InvalidInput, match=reason):
        Operator(broker).run(
            admin.create_user, tenant=tenant.tenant_id, email="weak@example.test",
            role="employee", password=password,
        )


def test_first_login_enrolls_totp_and_hands_out_recovery_codes_once(
    client: Client, broker: BrokerProcess, tenant: Tenant
) -> None:
    person = make_person(broker, tenant, "manager")
    step = login(client, person)

    assert step.status == 200
    assert step.body["mfa"] == "enroll"
    assert 0 < step.body["expires_in"] <= 300
    uri = urlsplit(step.body["provisioning_uri"])
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    query = parse_qs(uri.query)
    assert query["issuer"] == ["bucketreel"]
    person.secret = query["secret"][0]

    wrong = mfa(client, step.body["challenge"], "000000")
    done = mfa(client, step.body["challenge"], person.next_code())

    assert (wrong.status, wrong.body["error"]) == (401, "invalid_mfa_code")
    assert done.status == 200, done.body
    assert done.body["token_type"] == "Bearer"
    assert 0 < done.body["expires_in"] <= 900
    assert len(done.body["recovery_codes"]) == 10
    assert len(set(done.body["recovery_codes"])) == 10
    who = client.call("GET", "/api/v1/employees", token=done.body["access_token"])
    assert who.status == 200
    # The next login asks for a code (no new secret, no recovery codes).
    again = login_again(client, person)
    assert again.status == 200
    assert "recovery_codes" not in again.body


def test_wrong_password_unknown_email_and_unknown_tenant_look_the_same(
    client: Client, broker: BrokerProcess, tenant: Tenant
) -> None:
    person = make_person(broker, tenant)
    replies = [
        client.call("POST", "/api/v1/auth/login", body)
        for body in (
            {"tenant": tenant.name, "email": person.email, "password": "not the password!"},
            {"tenant": tenant.name, "email": "nobody@example.test", "password": PASSWORD},
            {"tenant": "no-such-tenant", "email": person.email, "password": PASSWORD},
        )
    ]
    assert {(r.status, r.body["error"], r.body["message"]) for r in replies} == {
        (401, "invalid_credentials", "email or password is wrong")
    }


def test_login_time_does_not_tell_whether_the_email_exists(
    broker: BrokerProcess, tenant: Tenant
) -> None:
    person = make_person(broker, tenant)

    def timed(email: str) -> float:
        client = Client(broker.url)  # own address: the per-client limit stays out of the way
        began = time.perf_counter()
        reply = client.call(
            "POST", "/api/v1/auth/login",
            {"tenant": tenant.name, "email": email, "password": "not the password!"},
        )
        assert reply.status == 401
        return time.perf_counter() - began

    timed("warm-up@example.test")
    samples = [(timed(person.email), timed(f"ghost{i}@example.test")) for i in range(3)]
    known = statistics.median(k for k, _ in samples)  # 3 failures: under the account limit
    unknown = statistics.median(u for _, u in samples)

    # An unknown email still pays a full Argon2id verification (tens of milliseconds).
    assert unknown > 0.5 * known, (known, unknown)


def test_a_totp_code_is_accepted_once_ever(
    client: Client, broker: BrokerProcess, tenant: Tenant
) -> None:
    person = sign_in(client, make_person(broker, tenant))
    used = pyotp.TOTP(person.secret).generate_otp(person.last_step)

    step = login(client, person)
    replay = mfa(client, step.body["challenge"], used)
    fresh = mfa(client, step.body["challenge"], person.next_code())

    assert (replay.status, replay.body["error"]) == (401, "invalid_mfa_code")
    assert fresh.status == 200, fresh.body


def test_a_recovery_code_works_once_in_place_of_a_code(
    client: Client, broker: BrokerProcess, tenant: Tenant
) -> None:
    person = sign_in(client, make_person(broker, tenant))
    code = person.recovery_codes[0]

    first = mfa(client, login(client, person).body["challenge"], code)
    second = mfa(client, login(client, person).body["challenge"], code)

    assert first.status == 200, first.body
    assert (second.status, second.body["error"]) == (401, "invalid_mfa_code")


def test_a_challenge_works_once_and_only_with_a_code(
    client: Client, broker: BrokerProcess, tenant: Tenant
) -> None:
    person = sign_in(client, make_person(broker, tenant))
    challenge = login(client, person).body["challenge"]

    used = mfa(client, challenge, person.next_code())
    again = mfa(client, challenge, person.recovery_codes[0])
    made_up = mfa(client, "brc_" + "x" * 43, person.recovery_codes[1])

    assert used.status == 200
    assert (again.status, again.body["error"]) == (401, "invalid_token")
    assert (made_up.status, made_up.body["error"]) == (401, "invalid_token")


def test_a_weaker_password_hash_is_upgraded_on_the_next_good_login(
    client: Client, broker: BrokerProcess, tenant: Tenant
) -> None:
    person = make_person(broker, tenant)
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)

    async def set_weak_hash(services: Services) -> None:
        db = Database.from_url(broker.database_url)
        try:
            async with db.transaction() as conn:
                await conn.execute(
                    update(users).where(users.c.id == person.user_id).values(password_hash=weak)
                )
        finally:
            await db.close()

    in_process(broker, lambda: datetime.now(UTC), set_weak_hash)
    assert login(client, person).status == 200

    upgraded = str(user_row(broker, person.user_id)["password_hash"])
    assert upgraded.startswith("$argon2id$")
    assert "m=19456,t=2,p=1" in upgraded


def test_the_totp_secret_is_sealed_at_rest(
    client: Client, broker: BrokerProcess, tenant: Tenant
) -> None:
    person = sign_in(client, make_person(broker, tenant))
    row = user_row(broker, person.user_id)
    sealed = bytes(row["totp_sealed"])  # type: ignore[arg-type]

    assert person.secret.encode() not in sealed
    assert row["totp_kek_version"] == "v1"
    assert row["totp_last_step"] == person.last_step


def test_codes_are_accepted_one_step_either_side_and_no_further(
    client: Client, broker: BrokerProcess, tenant: Tenant
) -> None:
    """In-process with the broker's own services at chosen instants (no sleeping)."""
    person = sign_in(client, make_person(broker, tenant))
    totp = pyotp.TOTP(person.secret)
    base = datetime.now(UTC) + timedelta(minutes=10)  # steps this person has never used

    def attempt(offset_steps: int) -> bool:
        async def use(services: Services) -> bool:
            step = await services.login.login(tenant.name, person.email, PASSWORD, "in-process")
            code = totp.at(base + timedelta(seconds=30 * offset_steps))
            try:
                await services.login.mfa(step.challenge, code, "in-process")
            except Unauthenticated:
                return False
            return True

        return in_process(broker, lambda: base, use)

    assert not attempt(-2)
    assert not attempt(2)
    assert attempt(-1)
    assert not attempt(-1), "the same step again is a replay"
    assert attempt(1)
    assert not attempt(0), "a step earlier than the last one accepted is refused too"


def test_logins_and_failures_are_in_the_audit_log(
    client: Client, broker: BrokerProcess, tenant: Tenant
) -> None:
    person = sign_in(client, make_person(broker, tenant))
    login(client, person, "not the password!")

    mine = [e.action for e in audit_entries(broker, tenant.tenant_id) if e.target == person.user_id]
    assert "auth.mfa_enroll" in mine
    assert "auth.login_failed" in mine
