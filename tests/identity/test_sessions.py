"""User sessions: access tokens verified strictly, refresh rotation and theft detection,
logout, sign out everywhere, and signing-key rotation."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from broker.auth.tokens import TokenSigner, key_id
from broker.errors import ConfigError
from broker.identity import Principal
from broker.services import Services
from broker.settings import Secret, Settings, generate_secrets
from tests.identity.people import (
    Client,
    Clock,
    Person,
    audit_entries,
    in_process,
    login_again,
    make_person,
    refresh_past_the_end,
    sign_in,
)
from tests.support.api import Tenant, make_tenant
from tests.support.broker import BrokerProcess, parse_env_file
from tests.support.s3 import S3Endpoint

WHOAMI = "/api/v1/employees"
MAX_AGE = 30 * 86_400  # BUCKETREEL_USER_SESSION_MAX_AGE's default


@pytest.fixture(scope="module")
def alice(broker: BrokerProcess, tenant: Tenant) -> Person:
    return sign_in(Client(broker.url), make_person(broker, tenant, "admin"))


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def forge(broker: BrokerProcess, claims: dict[str, Any], **header: Any) -> str:
    """A token signed with the broker's real key (as if the key had leaked)."""
    key = broker.env["BUCKETREEL_SECRET_KEY"]
    headers = {"kid": key_id(Secret(key)), **header}
    return jwt.encode(claims, key, algorithm="HS256", headers=headers)


def test_access_token_claims(alice: Person, tenant: Tenant) -> None:
    header = jwt.get_unverified_header(alice.access_token)
    claims = claims_of(alice.access_token)

    assert header["alg"] == "HS256"
    assert header["kid"].startswith("k")
    assert claims["aud"] == "user"
    assert claims["sub"] == alice.user_id
    assert (claims["tid"], claims["role"]) == (tenant.tenant_id, "admin")
    assert claims["exp"] - claims["iat"] <= 900
    assert claims["jti"]
    assert claims["sid"]
    assert claims["sv"] == 1


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_each_token_attack_is_refused(
    client: Client, broker: BrokerProcess, alice: Person, s3_endpoint: S3Endpoint
) -> None:
    good = claims_of(alice.access_token)
    kid = jwt.get_unverified_header(alice.access_token)["kid"]
    head, body, sig = alice.access_token.split(".")
    other_tenant = make_tenant(broker, s3_endpoint)
    now = int(time.time())
    attacks = {
        "alg none": b64({"alg": "none", "typ": "JWT", "kid": kid}) + "." + body + ".",
        "RS/HS confusion": b64({"alg": "RS256", "typ": "JWT", "kid": kid}) + "." + body + "." + sig,
        "unknown kid": jwt.encode(good, "x" * 48, algorithm="HS256", headers={"kid": "kunknown"}),
        "right kid, wrong key": jwt.encode(good, "x" * 48, algorithm="HS256", headers={"kid": kid}),
        "tampered": head + "." + b64({**good, "role": "admin", "tid": other_tenant.tenant_id})
        + "." + sig,
        "expired": forge(broker, {**good, "iat": now - 2000, "exp": now - 1000}),
        "ten-year life": forge(broker, {**good, "iat": now, "exp": now + 10 * 365 * 86_400}),
        "issued long ago": forge(broker, {**good, "iat": now - 86_400, "exp": now + 600}),
        "issued in the future": forge(broker, {**good, "iat": now + 3600, "exp": now + 4000}),
        "wrong tenant": forge(broker, {**good, "tid": other_tenant.tenant_id}),
        "other audience": forge(broker, {**good, "aud": "device"}),
        "role raised": forge(broker, {**good, "role": "manager"}),
        "old session version": forge(broker, {**good, "sv": 0}),
        "made-up session": forge(broker, {**good, "sid": str(uuid.uuid4())}),
        "garbage": "not.a.token",
    }
    for name, token in attacks.items():
        reply = client.call("GET", WHOAMI, token=token)
        assert reply.status == 401, name
        assert reply.body["error"] in {"invalid_token", "unauthenticated"}, name
    assert client.call("GET", WHOAMI, token=alice.access_token).status == 200


def test_refresh_rotates_and_reuse_revokes_the_whole_session(
    client: Client, broker: BrokerProcess, tenant: Tenant
) -> None:
    bob = sign_in(client, make_person(broker, tenant))
    first = client.call("POST", "/api/v1/auth/token", {"refresh_token": bob.refresh_token})
    assert first.status == 200, first.body
    assert first.body["refresh_token"] != bob.refresh_token
    assert client.call("GET", WHOAMI, token=first.body["access_token"]).status == 200

    stolen = client.call("POST", "/api/v1/auth/token", {"refresh_token": bob.refresh_token})
    rotated = first.body["refresh_token"]
    after = client.call("POST", "/api/v1/auth/token", {"refresh_token": rotated})

    assert (stolen.status, stolen.body["error"]) == (401, "invalid_token")
    assert after.status == 401, "the legitimate holder is cut off too"
    assert client.call("GET", WHOAMI, token=first.body["access_token"]).status == 401
    assert client.call("GET", WHOAMI, token=bob.access_token).status == 401
    reuse = [e for e in audit_entries(broker, tenant.tenant_id) if e.action == "user.refresh_reuse"]
    assert [e.target for e in reuse] == [bob.user_id]


def test_an_api_session_ends_at_its_absolute_lifetime_however_often_it_is_refreshed(
    client: Client, broker: BrokerProcess, tenant: Tenant
) -> None:
    """A leaked refresh token used regularly would otherwise keep a session alive for ever."""
    person = sign_in(client, make_person(broker, tenant))
    start = datetime.now(UTC)  # just after sign-in: the session began at most this
    end = start + timedelta(seconds=MAX_AGE)
    clock = Clock(start)

    async def use(services: Services) -> None:
        await refresh_past_the_end(  # a script refreshing well within the 14 days
            services.sessions.refresh, person.refresh_token, clock, end=end,
            every=timedelta(days=10),
        )

    in_process(broker, clock, use)


@pytest.mark.parametrize("value", ["3599", str(365 * 86_400 + 1)])
def test_the_api_session_lifetime_is_bounded(value: str) -> None:
    with pytest.raises(ConfigError, match="USER_SESSION_MAX_AGE"):
        Settings.from_env({**generate_secrets(), "BUCKETREEL_USER_SESSION_MAX_AGE": value})
    assert Settings.from_env(generate_secrets()).user_session_max_age == MAX_AGE


def test_logout_ends_this_session_only(
    client: Client, broker: BrokerProcess, tenant: Tenant
) -> None:
    carol = sign_in(client, make_person(broker, tenant))
    other = login_again(client, carol)
    assert other.status == 200

    out = client.call("POST", "/api/v1/auth/logout", token=carol.access_token)

    assert out.status == 200
    assert client.call("GET", WHOAMI, token=carol.access_token).status == 401
    refreshed = client.call("POST", "/api/v1/auth/token", {"refresh_token": carol.refresh_token})
    assert refreshed.status == 401
    assert client.call("GET", WHOAMI, token=other.body["access_token"]).status == 200


def test_sign_out_everywhere_ends_every_session(
    client: Client, broker: BrokerProcess, tenant: Tenant
) -> None:
    dave = sign_in(client, make_person(broker, tenant))
    other = login_again(client, dave)

    out = client.call("POST", "/api/v1/auth/sign-out-everywhere", token=other.body["access_token"])

    assert out.status == 200
    for token in (dave.access_token, other.body["access_token"]):
        assert client.call("GET", WHOAMI, token=token).status == 401
    for refresh in (dave.refresh_token, other.body["refresh_token"]):
        reply = client.call("POST", "/api/v1/auth/token", {"refresh_token": refresh})
        assert reply.status == 401


def test_key_rotation_keeps_tokens_of_the_previous_key_valid(broker: BrokerProcess) -> None:
    printed = parse_env_file(broker.cli("admin", "rotate-session-key"))
    old = broker.env["BUCKETREEL_SECRET_KEY"]
    new = printed["BUCKETREEL_SECRET_KEY"]
    assert printed["BUCKETREEL_SECRET_KEY_PREVIOUS"] == old
    assert new != old
    assert len(new) >= 32

    def signer(current: str, previous: str | None) -> TokenSigner:
        return TokenSigner(
            current=Secret(current), previous=Secret(previous) if previous else None, ttl=900,
            clock=lambda: datetime.now(UTC),
        )

    principal = Principal(
        kind="user", subject="u", tenant_id="t", user_id="u", role="admin", session_id="s",
        session_version=1,
    )
    before = signer(old, None).issue(principal)
    rotated = signer(new, old)
    assert rotated.verify(before, "user") == principal
    assert rotated.verify(rotated.issue(principal), "user") == principal
    with pytest.raises(Exception, match="invalid or expired"):
        signer(new, None).verify(before, "user")  # the old key dropped at the next rotation


def test_a_token_under_the_previous_key_cannot_outlive_the_access_token_ttl() -> None:
    """A leaked previous key must not mint tokens that outlast the rotation meant to end it:
    a ten-year `exp` (or an `iat` from long ago) is refused whatever key signed it."""
    old, new = "o" * 48, "n" * 48
    rotated = TokenSigner(
        current=Secret(new), previous=Secret(old), ttl=900, clock=lambda: datetime.now(UTC)
    )
    now = int(time.time())
    claims = {
        "iss": "bucketreel", "aud": "user", "sub": "u", "tid": "t", "uid": "u",
        "role": "admin", "sid": "s", "sv": 1, "jti": uuid.uuid4().hex,
    }

    def under_old_key(iat: int, exp: int) -> str:
        return jwt.encode(
            {**claims, "iat": iat, "exp": exp}, old, algorithm="HS256",
            headers={"kid": key_id(Secret(old))},
        )

    assert rotated.verify(under_old_key(now, now + 900), "user").subject == "u"
    for iat, exp in [
        (now, now + 10 * 365 * 86_400),  # a ten-year life
        (now - 86_400, now + 600),  # issued a day ago, exp stretched
        (now - 900 - 60, now + 60),  # older than any token lives
        (now + 3600, now + 3600 + 900),  # issued in the future
    ]:
        with pytest.raises(Exception, match="invalid or expired"):
            rotated.verify(under_old_key(iat, exp), "user")


def test_a_remembered_token_still_expires_and_another_audience_is_still_refused() -> None:
    """A verified token is not decoded again (the device path's CPU), but its times are
    checked on every use: once past `exp` (and the leeway) it is refused, remembered or not;
    and it is remembered for the audience it was verified for only."""
    now = [datetime.now(UTC)]
    signer = TokenSigner(current=Secret("c" * 48), previous=None, ttl=900, clock=lambda: now[0])
    device = Principal(kind="device", subject="d", tenant_id="t", user_id="u", role="member")
    token = signer.issue(device)
    assert signer.verify(token, "device").subject == "d"
    assert signer.verify(token, "device").subject == "d"  # remembered
    with pytest.raises(Exception, match="invalid or expired"):
        signer.verify(token, "user")
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with pytest.raises(Exception, match="invalid or expired"):
        signer.verify(tampered, "device")
    now[0] += timedelta(seconds=890)
    assert signer.verify(token, "device").subject == "d"  # within its life and the leeway
    now[0] += timedelta(seconds=20)
    with pytest.raises(Exception, match="invalid or expired"):
        signer.verify(token, "device")
    with pytest.raises(Exception, match="invalid or expired"):
        signer.verify(token, "device")  # forgotten, and refused by a full decode as well
