"""Login CSRF in a real browser (issue 13, finding 5): a page on another site submits a
`text/plain` form whose one field smuggles a JSON body into `POST /api/v1/auth/mfa` with
`cookie: true` and the attacker's own challenge and code. Before, Chromium followed it and the
broker set the attacker's session cookies in the victim's browser; now it is refused (403,
`Sec-Fetch-Site: cross-site`; 415 for the text/plain body in any case) and no cookie is set.

The attacker's page is served from `localhost`, the broker is reached at `127.0.0.1`: two
sites, as far as the browser is concerned.
"""

from __future__ import annotations

import html
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser

from tests.identity.people import Client, login, make_person
from tests.support.api import Tenant
from tests.support.broker import BrokerProcess
from tests.web.browser import off_thread

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


class AttackerSite:
    def __init__(self) -> None:
        self.page = b""
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(outer.page)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://localhost:{self.server.server_port}/"


@pytest.fixture
def attacker_site() -> Iterator[AttackerSite]:
    site = AttackerSite()
    thread = threading.Thread(target=site.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        site.server.shutdown()
        site.server.server_close()
        thread.join(5)


def smuggling_form(action: str, fields: dict[str, object]) -> bytes:
    """A self-submitting text/plain form whose body is `fields` as JSON (name=value)."""
    name = json.dumps({**fields, "pad": ""})[:-2]
    return (
        "<!doctype html><form id=f method=post enctype=text/plain "
        f'action="{html.escape(action)}"><input type=hidden name="{html.escape(name)}" '
        'value=\'"}\'></form><script>document.getElementById("f").submit()</script>'
    ).encode()


def test_a_cross_site_form_does_not_sign_the_browser_in(
    broker: BrokerProcess, tenant: Tenant, chromium: Browser, attacker_site: AttackerSite
) -> None:
    attacker = off_thread(make_person, broker, tenant, "manager")
    client = Client(broker.url)
    step = login(client, attacker)  # the attacker's own account and challenge
    assert step.status == 200, step.body
    attacker.secret = parse_qs(urlsplit(step.body["provisioning_uri"]).query)["secret"][0]
    attacker_site.page = smuggling_form(broker.url + "/api/v1/auth/mfa", {
        "challenge": step.body["challenge"], "code": attacker.next_code(), "cookie": True,
    })

    victim = chromium.new_context()
    page = victim.new_page()
    with page.expect_navigation(url=broker.url + "/api/v1/auth/mfa") as landed:
        page.goto(attacker_site.url)
    reply = landed.value
    assert reply is not None
    assert reply.status in (403, 415), reply.text()
    assert json.loads(reply.text())["error"] in ("cross_site_request", "unsupported_media_type")
    assert not [c for c in victim.cookies() if c["name"].startswith("bucketreel_session")]
    victim.close()
