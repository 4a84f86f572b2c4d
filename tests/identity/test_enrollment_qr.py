"""The first sign-in page shows the TOTP setup URI as a QR code, whatever the fields' lengths.

The code is read back from the SVG the page serves (`tests.support.qrdecode`) and must hold
exactly the URI the page prints. The hand-written encoder this replaced stopped at 213 bytes,
so a long email plus a long tenant name made this page answer 500.
"""

from __future__ import annotations

import html
import re
import secrets
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import pytest

from broker import admin
from tests.identity.people import Client
from tests.support.api import PASSWORD, Operator, Reply
from tests.support.broker import BrokerProcess
from tests.support.qrdecode import decode, svg_modules
from tests.support.s3 import S3Endpoint

MAX_TENANT = 200  # accounts.create_tenant
MAX_LOCAL, MAX_DOMAIN = 64, 255  # accounts' email pattern: 320 characters in all


def _names(char: str, domain_char: str = "x") -> tuple[str, str]:
    """A tenant name and an email of the greatest lengths the fields allow, made of `char`
    (the email's domain of `domain_char`)."""
    tag = secrets.token_hex(4)
    tenant = tag + char * (MAX_TENANT - len(tag))
    email = tag + char * (MAX_LOCAL - len(tag)) + "@" + domain_char * (MAX_DOMAIN - 4) + ".com"
    return tenant, email


def _first_sign_in(
    broker: BrokerProcess, s3: S3Endpoint, client: Client, tenant: str, email: str
) -> Reply:
    """The page the password step answers for a person who has not enrolled TOTP yet."""
    operator = Operator(broker)
    tenant_id = operator.run(admin.create_tenant, name=tenant)["tenant_id"]
    operator.run(
        admin.set_storage, tenant=tenant_id, bucket=s3.create_bucket(), region=s3.region,
        endpoint_url=s3.url, prefix="rec", access_key_id=s3.access_key_id,
        secret_access_key=s3.secret_access_key,
        accept_risk=True,  # moto without IAM lets any key list and delete: the self-check says so
    )
    operator.run(
        admin.create_user, tenant=tenant_id, email=email, role="employee", password=PASSWORD
    )
    opened = client.call("GET", "/signin", headers={"Accept": "text/html"})
    assert opened.status == 200
    token = re.search(r"bucketreel_signin=([^;]+)", opened.headers["Set-Cookie"])
    assert token is not None, opened.headers
    form = {"csrf_token": token.group(1), "tenant": tenant, "email": email, "password": PASSWORD}
    return client.call(
        "POST", "/signin", body=urlencode(form).encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded", "Accept": "text/html",
            "Cookie": f"bucketreel_signin={token.group(1)}",
        },
    )


def _shown(page: str, css_class: str) -> str:
    found = re.search(rf'<code class="{css_class}">([^<]*)</code>', page)
    assert found is not None, f"no code.{css_class} on the page"
    return html.unescape(found.group(1))


@pytest.mark.parametrize("char", ["x", "ü"], ids=["ascii", "two-byte-utf8"])
def test_the_enrollment_qr_code_holds_the_setup_uri_at_the_longest_email_and_tenant(
    broker: BrokerProcess, s3_endpoint: S3Endpoint, client: Client, char: str
) -> None:
    """615 bytes of URI in ASCII (the old encoder answered 500 past 213), 1935 with a
    two-byte character in the tenant's name and the email's local part."""
    tenant, email = _names(char)

    reply = _first_sign_in(broker, s3_endpoint, client, tenant, email)

    assert reply.status == 200, reply.raw[:500]
    page = reply.raw.decode()
    uri = _shown(page, "uri")
    svg = re.search(r'<svg[^>]*class="qr".*?</svg>', page, re.S)
    assert svg is not None, "the enrollment page shows a QR code"
    assert decode(svg_modules(svg.group(0))) == uri.encode(), "the QR code holds the URI"
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert email in unquote(parts.path)
    assert tenant in unquote(parts.path)
    assert parse_qs(parts.query)["secret"] == [_shown(page, "secret")]
    csp = reply.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "style-src 'self'" in csp
    assert "unsafe-inline" not in csp


def test_a_setup_uri_too_long_for_any_qr_code_still_gives_the_key(
    broker: BrokerProcess, s3_endpoint: S3Endpoint, client: Client
) -> None:
    """Four-byte characters in every field, each at its greatest length, make a 6 kB URI:
    more than a version-40 code holds. The page still answers, with the key and the URI."""
    face = "\N{GRINNING FACE}"
    tenant, email = _names(face, face)

    reply = _first_sign_in(broker, s3_endpoint, client, tenant, email)

    assert reply.status == 200, reply.raw[:500]
    page = reply.raw.decode()
    assert 'class="qr"' not in page
    assert "too long for a QR code" in page
    uri = _shown(page, "uri")
    assert len(uri.encode()) > 2953  # a version-40 code's bytes at the lowest level, L
    assert parse_qs(urlsplit(uri).query)["secret"] == [_shown(page, "secret")]
