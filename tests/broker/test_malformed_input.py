"""Malformed input answers a clear 4xx, never a 500 (issue 13, finding 6): each case below made
the broker answer 500 (or a false 503 on PostgreSQL) with a traceback in its log before the
wire models. On both databases; each case also proves nothing changed and nothing was logged
as a traceback."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.identity.people import Person, login, make_person, mfa, sign_in
from tests.support.api import (
    Api,
    Device,
    Reply,
    enroll,
    make_tenant,
    random_segment,
    snapshot,
    start_recording,
)
from tests.support.broker import BrokerProcess
from tests.support.s3 import S3Endpoint


@dataclass
class World:
    api: Api
    device: Device
    recording_id: str
    admin: Person
    session_cookie: str  # a manager's browser session: "bucketreel_session=…; bucketreel_csrf=…"


def browser_session(api: Api, person: Person) -> str:
    step = login(api, person)
    person.secret = parse_qs(urlsplit(step.body["provisioning_uri"]).query)["secret"][0]
    done = mfa(api, step.body["challenge"], person.next_code(), cookie=True)
    assert done.status == 200, done.body
    jar = dict(
        part.split(";")[0].strip().split("=", 1)
        for part in done.headers["Set-Cookie"].split(",")
        if part.strip().startswith(("bucketreel_session=", "bucketreel_csrf="))
    )
    return "; ".join(f"{k}={v}" for k, v in jar.items())


@pytest.fixture(scope="module")
def world(broker: BrokerProcess, s3_endpoint: S3Endpoint) -> World:
    api = Api(broker.url)
    tenant = make_tenant(broker, s3_endpoint)
    device = enroll(api, broker, tenant)
    admin = sign_in(api, make_person(broker, tenant, "admin"))
    cookie = browser_session(api, make_person(broker, tenant, "manager"))
    return World(api, device, start_recording(api, device), admin, cookie)


def json_body(w: World, path: str, raw: bytes, token: str | None = None) -> Reply:
    return w.api.call(
        "POST", path, body=raw, headers={"Content-Type": "application/json"}, token=token
    )


HUGE_INT = b'{"code": ' + b"7" * 5000 + b', "name": "x"}'
DEEP = b"[" * 10_000 + b"]" * 10_000
OVERFLOW = "9999-12-31T23:59:59-01:00"  # a valid local time that is past year 9999 in UTC
UNDERFLOW = "0001-01-01T00:00:00+01:00"

Case = Callable[[World], Reply]
CASES: dict[str, tuple[int, str, str, Case]] = {
    # name: (status, error code, a word the message must contain, the request)
    "an integer of 5000 digits": (400, "invalid_field", "code", lambda w: json_body(
        w, "/api/v1/devices/enroll", HUGE_INT)),
    "10000-deep nesting": (400, "malformed_json", "nested", lambda w: json_body(
        w, "/api/v1/devices/enroll", DEEP)),
    "10000-deep nesting, authenticated": (400, "malformed_json", "nested", lambda w: json_body(
        w, "/api/v1/devices/heartbeat", DEEP, token=w.device.access_token)),
    "a non-ASCII CSRF header": (403, "csrf_failed", "CSRF", lambda w: w.api.call(
        "POST", "/api/v1/auth/logout",
        headers={"Cookie": w.session_cookie, "X-CSRF-Token": "é"})),
    "a non-ASCII sign-in form token": (403, "forbidden", "sign-in", lambda w: w.api.call(
        "POST", "/signin", body=b"csrf_token=%C3%A9&tenant=t&email=e&password=p",
        headers={"Content-Type": "application/x-www-form-urlencoded",
                 "Cookie": "bucketreel_signin=abc"})),
    "multipart without a boundary": (400, "invalid_field", "boundary", lambda w: w.api.call(
        "POST", "/signin", body=b"--x\r\n\r\n", headers={"Content-Type": "multipart/form-data",
                                                        "Cookie": "bucketreel_signin=abc"})),
    "a start time past year 9999 in UTC": (400, "invalid_field", "started_at", lambda w: w.api.call(
        "POST", "/api/v1/recordings", {"started_at": OVERFLOW}, token=w.device.access_token)),
    "a segment time before year 1": (400, "invalid_field", "started_at", lambda w: w.api.call(
        "POST", f"/api/v1/recordings/{w.recording_id}/segments/0/upload",
        random_segment().declaration(started_at=UNDERFLOW), token=w.device.access_token)),
    "a pause past year 9999 in UTC": (400, "invalid_field", "from", lambda w: w.api.call(
        "POST", f"/api/v1/recordings/{w.recording_id}/gaps",
        {"seqs": [], "reason": "idle", "from": OVERFLOW, "to": OVERFLOW},
        token=w.device.access_token)),
    "an endpoint_url urlsplit cannot parse": (400, "invalid_field", "endpoint_url", lambda w: (
        w.api.call("PUT", "/api/v1/admin/storage", {
            "bucket": "b", "region": "eu-central-1", "endpoint_url": "http://[::1",
            "access_key_id": "AKIA", "secret_access_key": "s"}, token=w.admin.access_token))),
    "NUL in the email of a login": (400, "invalid_field", "email", lambda w: w.api.call(
        "POST", "/api/v1/auth/login", {"tenant": "t", "email": "a\x00@b", "password": "p"})),
    "NUL in a device name": (400, "invalid_field", "name", lambda w: w.api.call(
        "POST", "/api/v1/devices/enroll", {"code": "bre_x", "name": "pc\x00"})),
    "NUL in a path id": (404, "not_found", "recording", lambda w: w.api.call(
        "GET", "/api/v1/recordings/abc%00def", token=w.device.access_token)),
    "NUL in an admin's path id": (404, "not_found", "device", lambda w: w.api.call(
        "POST", "/api/v1/admin/devices/x%00y/revoke", token=w.admin.access_token)),
    "NUL in an audit filter": (400, "invalid_field", "actor", lambda w: w.api.call(
        "GET", "/api/v1/admin/audit/export?actor=a%00b", token=w.admin.access_token)),
    "a day past 9998 in the audit export": (400, "invalid_field", "day", lambda w: w.api.call(
        "GET", "/api/v1/admin/audit/export?day=9999-12-31", token=w.admin.access_token)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_input_gets_a_clear_4xx_and_no_traceback(
    world: World, broker: BrokerProcess, case: str
) -> None:
    status, code, word, send = CASES[case]
    before = snapshot(broker.database_url)
    logged = len(broker.log_text())

    reply = send(world)

    assert reply.status == status, reply.raw[:300]
    assert reply.body["error"] == code, reply.body
    assert word.lower() in reply.body["message"].lower(), reply.body
    assert snapshot(broker.database_url) == before
    assert "Traceback" not in broker.log_text()[logged:]
