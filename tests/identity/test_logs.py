"""The broker's logs carry no password, code, token, cookie, signature or credential."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pyotp

from tests.identity.people import Client, login, make_person, mfa, sign_in
from tests.support.api import (
    PASSWORD,
    Device,
    enrollment_code,
    make_tenant,
    put_with_grant,
    random_segment,
    start_recording,
)
from tests.support.broker import BrokerProcess
from tests.support.s3 import S3Endpoint


def test_a_whole_login_enrollment_and_upload_leave_no_secret_in_the_logs(
    broker: BrokerProcess, s3_endpoint: S3Endpoint
) -> None:
    client = Client(broker.url)
    tenant = make_tenant(broker, s3_endpoint)
    used: list[str] = [PASSWORD, s3_endpoint.secret_access_key]

    manager = sign_in(client, make_person(broker, tenant, "admin"))
    used += [manager.secret, manager.access_token, manager.refresh_token, *manager.recovery_codes]
    used.append(pyotp.TOTP(manager.secret).generate_otp(manager.last_step))
    step = login(client, manager)
    used.append(step.body["challenge"])
    by_recovery = mfa(client, step.body["challenge"], manager.recovery_codes[0], cookie=True)
    used += [by_recovery.body["csrf_token"], by_recovery.headers["Set-Cookie"].split(";")[0]]
    refreshed = client.call("POST", "/api/v1/auth/token",
                            {"refresh_token": manager.refresh_token})
    used += [refreshed.body["access_token"], refreshed.body["refresh_token"]]
    failed = login(client, manager, "a wrong password, also secret")
    assert failed.status == 401
    used.append("a wrong password, also secret")

    code = enrollment_code(broker, tenant, manager.user_id)
    device = client.call("POST", "/api/v1/devices/enroll", {"code": code, "name": "ws"}).body
    used += [code, device["access_token"], device["refresh_token"]]

    recording_id = start_recording(
        client, Device(tenant, manager.user_id, device["device_id"], device["access_token"],
                       device["refresh_token"]),
    )
    segment = random_segment(2048)
    path = f"/api/v1/recordings/{recording_id}/segments/0"
    grant = client.call("POST", path + "/upload", segment.declaration(),
                        token=device["access_token"]).body
    assert put_with_grant(grant, segment.data).status == 200
    assert client.call("POST", path + "/complete", token=device["access_token"]).status == 200
    view = client.call("POST", path + "/view", token=refreshed.body["access_token"]).body
    for url in (grant["url"], view["url"]):
        used += parse_qs(urlsplit(url).query)["X-Amz-Signature"]
        used.append(urlsplit(url).query)

    logs = broker.log_tail(1_000_000)
    assert "/api/v1/auth/mfa" in logs, "the log was captured"
    found = [s[:12] + "…" for s in used if s and s in logs]
    assert not found, f"secrets in the broker's log: {found}"
