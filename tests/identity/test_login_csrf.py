"""Login CSRF: a page on another site cannot sign the victim's browser into the attacker's
account (issue 13, finding 5).

What a cross-site `<form enctype="text/plain">` makes Chromium send is reproduced byte for
byte over raw HTTP: `Content-Type: text/plain`, the attacker's `Origin`, `Sec-Fetch-Site:
cross-site`, and a body that is JSON because the form's one field is named
`{"tenant": …, "pad": "` and its value is `"}`. Before, both sign-in steps took it and the
reply set session cookies in the victim's browser.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.identity.people import Client, login, make_person, mfa, signin_headers
from tests.support.api import PASSWORD, Reply, Tenant
from tests.support.broker import BrokerProcess

EVIL = "https://evil.example"


def text_plain_form(client: Client, path: str, fields: dict[str, object], **headers: str) -> Reply:
    """The bytes of a text/plain form post whose one field smuggles a JSON object."""
    smuggled = json.dumps({**fields, "pad": ""})[:-2]  # … "pad": "   (the field's name)
    body = f'{smuggled}="}}'.encode()  # name=value: the value closes the string and object
    assert json.loads(body)["pad"] == "=", body
    return client.call("POST", path, body=body, headers={"Content-Type": "text/plain", **headers})


CROSS_SITE = {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"}


@pytest.mark.parametrize(
    "headers", [CROSS_SITE, {}], ids=["as-a-browser-sends-it", "without-origin-headers"]
)
def test_a_cross_site_text_plain_form_does_not_sign_in(
    client: Client, broker: BrokerProcess, tenant: Tenant, headers: dict[str, str]
) -> None:
    attacker = make_person(broker, tenant, "employee")
    first = text_plain_form(client, "/api/v1/auth/login", {
        "tenant": tenant.tenant_id, "email": attacker.email, "password": PASSWORD,
    }, **headers)
    # 403 when the browser says where it comes from; 415 in any case for text/plain
    assert first.status in (403, 415), first.body
    assert first.body["error"] in ("cross_site_request", "unsupported_media_type")
    assert "Set-Cookie" not in first.headers

    # even with a challenge the attacker got himself, the second step sets no cookie
    step = login(client, attacker)
    assert step.status == 200, step.body
    attacker.secret = parse_qs(urlsplit(step.body["provisioning_uri"]).query)["secret"][0]
    second = text_plain_form(client, "/api/v1/auth/mfa", {
        "challenge": step.body["challenge"], "code": attacker.next_code(), "cookie": True,
    }, **headers)
    assert second.status in (403, 415), second.body
    assert "Set-Cookie" not in second.headers


def test_json_from_another_origin_is_refused(
    client: Client, broker: BrokerProcess, tenant: Tenant
) -> None:
    person = make_person(broker, tenant, "employee")
    body = {"tenant": tenant.tenant_id, "email": person.email, "password": PASSWORD}
    for headers in (
        {"Origin": EVIL}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": "https://other.example.test"},
        {"Sec-Fetch-Site": "cross-site", "Origin": "null"},  # a no-referrer attacker page
    ):
        refused = client.call("POST", "/api/v1/auth/login", body, headers=headers)
        assert (refused.status, refused.body["error"]) == (403, "cross_site_request"), headers
    # the broker's own origin is served; so is what Chromium sends for the sign-in page's own
    # form under `Referrer-Policy: no-referrer` (Origin: null, Sec-Fetch-Site: same-origin)
    own = urlsplit(broker.url)
    for same in (
        {"Origin": f"{own.scheme}://{own.netloc}"},
        {"Origin": f"{own.scheme}://{own.netloc}", "Sec-Fetch-Site": "same-origin"},
        {"Origin": "null", "Sec-Fetch-Site": "same-origin"},
    ):
        served = client.call("POST", "/api/v1/auth/login", body, headers=same)
        assert served.status == 200, (same, served.body)


def test_a_browser_sign_in_needs_the_sign_in_pages_token(
    client: Client, broker: BrokerProcess, tenant: Tenant
) -> None:
    person = make_person(broker, tenant, "manager")
    step = login(client, person)
    person.secret = parse_qs(urlsplit(step.body["provisioning_uri"]).query)["secret"][0]
    code = person.next_code()
    sent = {"challenge": step.body["challenge"], "code": code, "cookie": True}

    for headers in (
        {},  # no token at all
        {"X-CSRF-Token": "guessed"},  # a header without its cookie
        {"Cookie": "bucketreel_signin=a", "X-CSRF-Token": "b"},  # not the same value
        {"Cookie": "bucketreel_signin=a", "X-CSRF-Token": "é"},  # not even ASCII
    ):
        refused = client.call("POST", "/api/v1/auth/mfa", sent, headers=headers)
        assert (refused.status, refused.body["error"]) == (403, "csrf_failed"), headers
        assert "Set-Cookie" not in refused.headers

    signed = client.call("POST", "/api/v1/auth/mfa", sent, headers=signin_headers(client))
    assert signed.status == 200, signed.body
    assert "bucketreel_session=" in signed.headers["Set-Cookie"]
    # a bearer sign-in (no cookie) needs no page token: scripts and the agent use it
    again = login(client, person)
    bearer = mfa(client, again.body["challenge"], person.next_code())
    assert bearer.status == 200, bearer.body
    assert "access_token" in bearer.body
