"""Browser sessions: cookie attributes, CSRF on state-changing requests, security headers."""

from __future__ import annotations

import re

from tests.identity.people import Client, Person, login, make_person, mfa
from tests.support.api import Tenant
from tests.support.broker import BrokerProcess


def browser_login(client: Client, person: Person) -> tuple[dict[str, str], str, str]:
    """Enroll and sign in as a browser: returns the reply body, Set-Cookie header and cookies."""
    from urllib.parse import parse_qs, urlsplit

    step = login(client, person)
    person.secret = parse_qs(urlsplit(step.body["provisioning_uri"]).query)["secret"][0]
    reply = mfa(client, step.body["challenge"], person.next_code(), cookie=True)
    assert reply.status == 200, reply.body
    set_cookie = reply.headers["Set-Cookie"]
    pairs = re.findall(r"(bucketreel_(?:session|csrf))=([^;,\s]+)", set_cookie)
    assert {name for name, _ in pairs} == {"bucketreel_session", "bucketreel_csrf"}
    cookie = "; ".join(f"{name}={value}" for name, value in pairs)
    return reply.body, set_cookie, cookie


def test_cookies_are_httponly_secure_samesite_and_tokens_stay_out_of_the_page(
    client: Client, broker: BrokerProcess, tenant: Tenant
) -> None:
    body, set_cookie, _ = browser_login(client, make_person(broker, tenant, "manager"))

    assert "access_token" not in body
    assert "refresh_token" not in body
    assert body["csrf_token"]
    session = next(c for c in set_cookie.split(", bucketreel_") if "bucketreel_session=" in c)
    for attribute in ("HttpOnly", "Secure", "SameSite=Lax", "Path=/"):
        assert attribute in session, attribute


def test_state_changing_cookie_requests_need_the_csrf_token(
    client: Client, broker: BrokerProcess, tenant: Tenant
) -> None:
    body, _, cookie = browser_login(client, make_person(broker, tenant, "manager"))

    read = client.call("GET", "/api/v1/employees", headers={"Cookie": cookie})
    forged = client.call("POST", "/api/v1/auth/logout", headers={"Cookie": cookie})
    wrong = client.call(
        "POST", "/api/v1/auth/logout", headers={"Cookie": cookie, "X-CSRF-Token": "0" * 64}
    )
    good = client.call(
        "POST", "/api/v1/auth/logout",
        headers={"Cookie": cookie, "X-CSRF-Token": body["csrf_token"]},
    )

    assert read.status == 200
    assert (forged.status, forged.body["error"]) == (403, "csrf_failed")
    assert wrong.status == 403
    assert good.status == 200
    assert client.call("GET", "/api/v1/employees", headers={"Cookie": cookie}).status == 401


def test_security_headers_on_every_reply(client: Client) -> None:
    for reply in (
        client.call("GET", "/healthz"),
        client.call("POST", "/api/v1/auth/login", {"tenant": "x"}),
        client.call("GET", "/api/v1/employees"),
    ):
        assert reply.headers["Cache-Control"] == "no-store"
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
        assert reply.headers["Referrer-Policy"] == "no-referrer"
        csp = reply.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp
        assert "frame-ancestors 'none'" in csp
        # Plain http on loopback here; HSTS is sent over TLS or with BUCKETREEL_BEHIND_TLS=1.
        assert "Strict-Transport-Security" not in reply.headers
