"""Browser sessions are refreshed with a cookie, and stay bounded.

Signing in with cookies (`cookie: true`, or the sign-in pages) also sets `bucketreel_refresh`:
HttpOnly, SameSite=Strict, sent only to `POST /api/v1/auth/refresh`, holding a refresh token
of the session's own family. The refresh needs the session's CSRF token, rotates every cookie,
and a replayed refresh token ends the whole session (audited). A browser session ends after
`BUCKETREEL_BROWSER_IDLE_TIMEOUT` without a refresh and `BUCKETREEL_BROWSER_SESSION_MAX_AGE`
after sign-in however often it is refreshed; those instants are reached with the broker's own
services on a clock of the test's (`in_process`), on the same database.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.cookies import Morsel, SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest

from broker.errors import ConfigError, Unauthenticated
from broker.services import Services
from broker.settings import Settings
from tests.identity.people import (
    Client,
    Clock,
    Person,
    audit_entries,
    in_process,
    login,
    make_person,
    refresh_past_the_end,
    sign_in,
    signin_token,
)
from tests.support import contract
from tests.support.api import PASSWORD, Tenant
from tests.support.broker import BrokerProcess

REFRESH = "/api/v1/auth/refresh"
WHOAMI = "/api/v1/employees"
IDLE = 1800  # the defaults
MAX_AGE = 12 * 3600


@dataclass(frozen=True)
class Sent:
    status: int
    body: Any
    cookies: dict[str, Morsel[str]]  # what the reply set (or deleted)


def send(
    client: Client,
    method: str,
    path: str,
    payload: Any = None,
    *,
    cookies: dict[str, str] | None = None,
    csrf: str | None = None,
    form: dict[str, str] | None = None,
) -> Sent:
    """One request as a browser makes it: the cookies given, the CSRF header if given."""
    headers = {"X-Forwarded-For": client.address}
    if cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    if csrf is not None:
        headers["X-CSRF-Token"] = csrf
    body = None
    if payload is not None:
        body = json.dumps(payload).encode()
        headers["Content-Type"] = "application/json"
    if form is not None:
        reply = client.http.request_encode_body(
            method, client.base_url + path, fields=form, headers=headers, encode_multipart=False,
            redirect=False,
        )
    else:
        reply = client.http.request(
            method, client.base_url + path, body=body, headers=headers, redirect=False
        )
    contract.RECORDER.record(
        method, path, reply.status, reply.headers.get("Content-Type", ""), reply.data
    )
    parsed = None
    if reply.data and reply.headers.get("Content-Type", "").startswith("application/json"):
        parsed = json.loads(reply.data)
    elif reply.data:
        parsed = reply.data.decode()
    jar: dict[str, Morsel[str]] = {}
    for line in reply.headers.getlist("Set-Cookie"):
        parsed_cookie: SimpleCookie = SimpleCookie()
        parsed_cookie.load(line)
        jar.update(parsed_cookie)
    return Sent(reply.status, parsed, jar)


@dataclass
class Session:
    """A browser's session cookies, and the CSRF token its page holds."""

    access: str
    refresh: str
    csrf: str

    @classmethod
    def from_reply(cls, sent: Sent, csrf: str) -> Session:
        return cls(sent.cookies["bucketreel_session"].value,
                   sent.cookies["bucketreel_refresh"].value, csrf)

    def page_cookies(self) -> dict[str, str]:
        """What a browser sends to any path but the refresh route."""
        return {"bucketreel_session": self.access, "bucketreel_csrf": self.csrf}

    def refresh_cookies(self) -> dict[str, str]:
        """What a browser sends to the refresh route."""
        return {**self.page_cookies(), "bucketreel_refresh": self.refresh}


def cookie_login(client: Client, broker: BrokerProcess, tenant: Tenant) -> tuple[Person, Sent]:
    """A new manager enrolls and signs in with `cookie: true`; returns the MFA reply."""
    person = make_person(broker, tenant, "manager")
    step = login(client, person)
    assert step.status == 200, step.body
    person.secret = parse_qs(urlsplit(step.body["provisioning_uri"]).query)["secret"][0]
    token = signin_token(client)
    done = send(client, "POST", "/api/v1/auth/mfa",
                {"challenge": step.body["challenge"], "code": person.next_code(), "cookie": True},
                cookies={"bucketreel_signin": token}, csrf=token)
    assert done.status == 200, done.body
    return person, done


def signed_in(client: Client, broker: BrokerProcess, tenant: Tenant) -> tuple[Person, Session]:
    person, done = cookie_login(client, broker, tenant)
    return person, Session.from_reply(done, done.body["csrf_token"])


def refresh(client: Client, session: Session, csrf: str | None = None) -> Sent:
    return send(client, "POST", REFRESH, cookies=session.refresh_cookies(),
                csrf=session.csrf if csrf is None else csrf)


def whoami(client: Client, session: Session) -> int:
    return send(client, "GET", WHOAMI, cookies=session.page_cookies()).status


def assert_refresh_cookie(morsel: Morsel[str], *, max_age: int, secure: bool = True) -> None:
    assert morsel["httponly"] is True
    assert bool(morsel["secure"]) is secure
    assert morsel["samesite"] == "Strict"
    assert morsel["path"] == REFRESH, "sent to the refresh route only"
    assert max_age - 5 <= int(morsel["max-age"]) <= max_age


def test_a_cookie_login_sets_a_refresh_cookie_for_the_refresh_route_only(
    client: Client, broker: BrokerProcess, tenant: Tenant
) -> None:
    _, done = cookie_login(client, broker, tenant)

    assert set(done.cookies) == {
        "bucketreel_session", "bucketreel_csrf", "bucketreel_refresh",
        "bucketreel_known",  # the known-device cookie (tests/identity/test_lockout.py)
    }
    assert_refresh_cookie(done.cookies["bucketreel_refresh"], max_age=IDLE)
    assert done.cookies["bucketreel_refresh"].value.startswith("bru_")
    session = done.cookies["bucketreel_session"]
    assert (session["path"], session["samesite"], session["httponly"]) == ("/", "Lax", True)
    assert "refresh_token" not in done.body
    assert "access_token" not in done.body


def test_the_sign_in_pages_set_the_refresh_cookie_too(
    client: Client, broker: BrokerProcess, tenant: Tenant
) -> None:
    person = make_person(broker, tenant, "manager")
    page = send(client, "GET", "/signin")
    token = page.cookies["bucketreel_signin"].value
    first = send(
        client, "POST", "/signin", cookies={"bucketreel_signin": token},
        form={"csrf_token": token, "tenant": person.tenant.name, "email": person.email,
              "password": PASSWORD},
    )
    assert first.status == 200, first.body
    person.secret = re.search(r'<code class="secret">([A-Z2-7]+)</code>', first.body)[1]
    challenge = re.search(r'name="challenge" value="([^"]+)"', first.body)[1]
    second = send(
        client, "POST", "/signin/code", cookies={"bucketreel_signin": token},
        form={"csrf_token": token, "challenge": challenge, "code": person.next_code()},
    )

    assert second.status == 200, second.body  # the recovery codes, once
    assert_refresh_cookie(second.cookies["bucketreel_refresh"], max_age=IDLE)
    csrf = second.cookies["bucketreel_csrf"].value
    rotated = refresh(client, Session.from_reply(second, csrf))
    assert rotated.status == 200, rotated.body


def test_refresh_needs_the_csrf_token_and_rotates_every_cookie(
    client: Client, broker: BrokerProcess, tenant: Tenant
) -> None:
    _, session = signed_in(client, broker, tenant)

    bare = send(client, "POST", REFRESH, cookies=session.refresh_cookies())
    wrong = refresh(client, session, csrf="0" * 64)
    no_cookie = send(client, "POST", REFRESH, cookies=session.page_cookies(), csrf=session.csrf)
    as_bearer = send(client, "POST", "/api/v1/auth/token", {"refresh_token": session.refresh})
    good = refresh(client, session)

    assert (bare.status, bare.body["error"]) == (403, "csrf_failed")
    assert (wrong.status, wrong.body["error"]) == (403, "csrf_failed")
    assert (no_cookie.status, no_cookie.body["error"]) == (401, "unauthenticated")
    assert as_bearer.status == 401, "a browser's refresh token is good at its own route only"
    assert good.status == 200, "refusals claimed nothing: the token still works once"
    assert set(good.body) == {"expires_in", "expires_at", "csrf_token"}
    assert 895 <= good.body["expires_in"] <= 900
    expires = datetime.fromisoformat(good.body["expires_at"].replace("Z", "+00:00"))
    assert abs(expires - datetime.now(UTC) - timedelta(seconds=900)) < timedelta(seconds=10)
    assert good.body["csrf_token"] == session.csrf, "one session, one CSRF token"
    assert set(good.cookies) == {"bucketreel_session", "bucketreel_csrf", "bucketreel_refresh"}
    assert_refresh_cookie(good.cookies["bucketreel_refresh"], max_age=IDLE)
    assert int(good.cookies["bucketreel_session"]["max-age"]) == good.body["expires_in"]
    new = Session.from_reply(good, good.body["csrf_token"])
    assert new.refresh != session.refresh
    assert new.access != session.access
    old_claims = jwt.decode(session.access, options={"verify_signature": False})
    new_claims = jwt.decode(new.access, options={"verify_signature": False})
    assert new_claims["sid"] == old_claims["sid"], "the same session (refresh family)"
    assert whoami(client, new) == 200
    assert refresh(client, new).status == 200


def test_a_replayed_refresh_cookie_ends_the_whole_session_and_is_audited(
    client: Client, broker: BrokerProcess, tenant: Tenant
) -> None:
    person, session = signed_in(client, broker, tenant)
    good = refresh(client, session)
    assert good.status == 200
    current = Session.from_reply(good, session.csrf)
    assert whoami(client, current) == 200

    replayed = refresh(client, session)

    assert (replayed.status, replayed.body["error"]) == (401, "invalid_token")
    assert whoami(client, current) == 401, "the new access token stops working too"
    assert refresh(client, current).status == 401, "the legitimate holder is cut off as well"
    reuse = [e for e in audit_entries(broker, tenant.tenant_id)
             if e.action == "user.refresh_reuse" and e.target == person.user_id]
    assert len(reuse) == 1
    assert reuse[0].details["session"] == jwt.decode(
        session.access, options={"verify_signature": False})["sid"]


def test_logout_and_sign_out_everywhere_end_the_refresh_cookie(
    client: Client, broker: BrokerProcess, tenant: Tenant
) -> None:
    person, session = signed_in(client, broker, tenant)
    out = send(client, "POST", "/api/v1/auth/logout", cookies=session.page_cookies(),
               csrf=session.csrf)
    assert out.status == 200
    cleared = out.cookies["bucketreel_refresh"]
    assert (cleared["path"], cleared["max-age"], cleared.value) == (REFRESH, "0", "")
    assert refresh(client, session).status == 401

    step = login(client, person)
    token = signin_token(client)
    again = send(client, "POST", "/api/v1/auth/mfa",
                {"challenge": step.body["challenge"], "code": person.next_code(), "cookie": True},
                cookies={"bucketreel_signin": token}, csrf=token)
    other = Session.from_reply(again, again.body["csrf_token"])
    everywhere = send(client, "POST", "/api/v1/auth/sign-out-everywhere",
                      cookies=other.page_cookies(), csrf=other.csrf)
    assert everywhere.status == 200
    assert everywhere.cookies["bucketreel_refresh"]["max-age"] == "0"
    assert refresh(client, other).status == 401


def test_the_page_sign_out_form_ends_the_refresh_cookie(
    client: Client, broker: BrokerProcess, tenant: Tenant
) -> None:
    _, session = signed_in(client, broker, tenant)
    out = send(client, "POST", "/logout", cookies=session.page_cookies(),
               form={"csrf_token": session.csrf})
    assert out.status in (200, 303)
    assert out.cookies["bucketreel_refresh"]["max-age"] == "0"
    assert refresh(client, session).status == 401


def test_the_idle_timeout_ends_a_browser_session(
    client: Client, broker: BrokerProcess, tenant: Tenant
) -> None:
    _, session = signed_in(client, broker, tenant)
    start = datetime.now(UTC)
    clock = Clock(start)

    async def use(services: Services) -> None:
        sessions = services.sessions
        clock.now = start + timedelta(seconds=IDLE + 1)
        with pytest.raises(Unauthenticated):
            await sessions.refresh_browser(session.refresh, session.csrf)
        clock.now = start + timedelta(seconds=IDLE - 60)  # a page refreshed in time
        kept = await sessions.refresh_browser(session.refresh, session.csrf)
        assert IDLE - 1 <= kept.refresh_expires_in <= IDLE
        clock.now += timedelta(seconds=IDLE + 1)  # then nothing for longer than the timeout
        with pytest.raises(Unauthenticated):
            await sessions.refresh_browser(kept.refresh_token, session.csrf)

    in_process(broker, clock, use)


def test_the_absolute_lifetime_ends_a_browser_session_however_often_it_is_refreshed(
    client: Client, broker: BrokerProcess, tenant: Tenant
) -> None:
    _, session = signed_in(client, broker, tenant)
    start = datetime.now(UTC)  # just after sign-in, so the session began at most this
    end = start + timedelta(seconds=MAX_AGE)
    clock = Clock(start)

    async def use(services: Services) -> None:
        await refresh_past_the_end(  # a page open all day, refreshing in time
            lambda token: services.sessions.refresh_browser(token, session.csrf),
            session.refresh, clock, end=end, every=timedelta(minutes=25),
        )

    in_process(broker, clock, use)
    assert refresh(client, session).status == 401, "the first token was used long ago"


def test_a_bearer_session_is_not_refreshed_at_the_cookie_route(
    client: Client, broker: BrokerProcess, tenant: Tenant
) -> None:
    person = sign_in(client, make_person(broker, tenant))
    claims = jwt.decode(person.access_token, options={"verify_signature": False})

    async def csrf_of(services: Services) -> str:  # as if the page had leaked it
        return services.sessions.csrf_token(claims["sid"])

    csrf = in_process(broker, lambda: datetime.now(UTC), csrf_of)
    sent = send(client, "POST", REFRESH, cookies={"bucketreel_refresh": person.refresh_token},
                csrf=csrf)
    assert (sent.status, sent.body["error"]) == (401, "invalid_token")
    bearer = send(client, "POST", "/api/v1/auth/token", {"refresh_token": person.refresh_token})
    assert bearer.status == 200, "and the refusal did not count as a replay"


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"BUCKETREEL_ACCESS_TOKEN_TTL": "30"}, "ACCESS_TOKEN_TTL"),
        ({"BUCKETREEL_BROWSER_IDLE_TIMEOUT": "900"}, "BROWSER_IDLE_TIMEOUT must be longer"),
        ({"BUCKETREEL_BROWSER_IDLE_TIMEOUT": "59"}, "BROWSER_IDLE_TIMEOUT"),
        ({"BUCKETREEL_BROWSER_SESSION_MAX_AGE": "299"}, "BROWSER_SESSION_MAX_AGE"),
        ({"BUCKETREEL_BROWSER_SESSION_MAX_AGE": str(7 * 86_400 + 1)}, "BROWSER_SESSION_MAX_AGE"),
    ],
)
def test_session_bounds_are_checked(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        Settings.from_env(env)


def test_short_access_tokens_only_in_development_mode() -> None:
    from broker.settings import generate_secrets

    env = {**generate_secrets(), "BUCKETREEL_ACCESS_TOKEN_TTL": "5"}
    with pytest.raises(ConfigError, match="ACCESS_TOKEN_TTL"):
        Settings.from_env(env)
    settings = Settings.from_env({**env, "BUCKETREEL_DEV_MODE": "1"})
    assert settings.access_token_ttl == 5
    assert (settings.browser_idle_timeout, settings.browser_session_max_age) == (IDLE, MAX_AGE)


def test_after_a_wrong_code_the_sign_in_form_keeps_organisation_and_email(
    client: Client, broker: BrokerProcess, tenant: Tenant
) -> None:
    person = make_person(broker, tenant, "manager")
    token = send(client, "GET", "/signin").cookies["bucketreel_signin"].value
    tricky = person.email  # escaped into the page, never markup
    first = send(
        client, "POST", "/signin", cookies={"bucketreel_signin": token},
        form={"csrf_token": token, "tenant": person.tenant.name, "email": tricky,
              "password": PASSWORD},
    )
    assert first.status == 200, first.body
    challenge = re.search(r'name="challenge" value="([^"]+)"', first.body)[1]
    carried = dict(re.findall(r'<input type="hidden" name="(tenant|email)" value="([^"]*)"',
                              first.body))
    assert carried == {"tenant": person.tenant.name, "email": tricky}

    wrong = send(
        client, "POST", "/signin/code", cookies={"bucketreel_signin": token},
        form={"csrf_token": token, "challenge": challenge, "code": "000000", **carried},
    )
    assert wrong.status == 401, wrong.body
    assert 'action="/signin"' in wrong.body  # back at the password step ...
    assert f'name="tenant" required autocomplete="organization" value="{person.tenant.name}"' \
        in wrong.body  # ... with what the person typed
    assert f'name="email" type="email" required autocomplete="username" value="{tricky}"' \
        in wrong.body
    assert 'name="password"' in wrong.body
    assert PASSWORD not in wrong.body  # never the password


def test_values_carried_through_the_code_form_are_escaped(
    client: Client, broker: BrokerProcess, tenant: Tenant
) -> None:
    token = send(client, "GET", "/signin").cookies["bucketreel_signin"].value
    hostile = '"><script>alert(1)</script>'
    wrong = send(
        client, "POST", "/signin/code", cookies={"bucketreel_signin": token},
        form={"csrf_token": token, "challenge": "c" * 40, "code": "000000",
              "tenant": hostile, "email": hostile},
    )
    assert wrong.status in {400, 401}, wrong.body
    assert "<script>" not in wrong.body
    assert "&#34;&gt;&lt;script&gt;" in wrong.body or "&quot;&gt;&lt;script&gt;" in wrong.body
