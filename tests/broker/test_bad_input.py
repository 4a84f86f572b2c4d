"""Bad input gets a clear 4xx JSON error, never a 500, and changes no data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.api import (
    Api,
    Device,
    Reply,
    enroll,
    enrollment_code,
    make_tenant,
    make_user,
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
    other_device: Device
    other_recording_id: str
    used_code: str


@pytest.fixture(scope="module")
def world(broker: BrokerProcess, s3_endpoint: S3Endpoint) -> World:
    """Made once: every case below must leave it as it was (which each case also checks)."""
    api = Api(broker.url)
    tenant = make_tenant(broker, s3_endpoint)
    device = enroll(api, broker, tenant)
    other = enroll(api, broker, make_tenant(broker, s3_endpoint))
    used = enrollment_code(broker, tenant, make_user(broker, tenant))
    assert api.call("POST", "/api/v1/devices/enroll", {"code": used, "name": "x"}).status == 201
    return World(
        api, device, start_recording(api, device), other, start_recording(api, other), used
    )


def upload_path(recording_id: str, seq: object) -> str:
    return f"/api/v1/recordings/{recording_id}/segments/{seq}/upload"


def good() -> dict[str, Any]:
    return random_segment().declaration()


Case = Callable[[World], Reply]

BEAT = {"state": "recording", "spool_bytes": 0, "spool_segments": 0, "errors": 0}

CASES: dict[str, tuple[int, str, Case]] = {
    "unknown enrollment code": (401, "invalid_enrollment_code", lambda w: w.api.call(
        "POST", "/api/v1/devices/enroll", {"code": "bre_nope", "name": "x"})),
    "used enrollment code": (401, "invalid_enrollment_code", lambda w: w.api.call(
        "POST", "/api/v1/devices/enroll", {"code": w.used_code, "name": "x"})),
    "enroll without a name": (400, "invalid_field", lambda w: w.api.call(
        "POST", "/api/v1/devices/enroll", {"code": w.used_code})),
    "size zero": (400, "invalid_field", lambda w: w.api.call(
        "POST", upload_path(w.recording_id, 0), {**good(), "size": 0},
        token=w.device.access_token)),
    "size negative": (400, "invalid_field", lambda w: w.api.call(
        "POST", upload_path(w.recording_id, 0), {**good(), "size": -5},
        token=w.device.access_token)),
    "size absurd": (400, "invalid_field", lambda w: w.api.call(
        "POST", upload_path(w.recording_id, 0), {**good(), "size": 10**15},
        token=w.device.access_token)),
    "size not a number": (400, "invalid_field", lambda w: w.api.call(
        "POST", upload_path(w.recording_id, 0), {**good(), "size": "100"},
        token=w.device.access_token)),
    "sha256 not base64": (400, "invalid_field", lambda w: w.api.call(
        "POST", upload_path(w.recording_id, 0), {**good(), "sha256": "not base64!"},
        token=w.device.access_token)),
    "sha256 of the wrong length": (400, "invalid_field", lambda w: w.api.call(
        "POST", upload_path(w.recording_id, 0), {**good(), "sha256": good()["md5"]},
        token=w.device.access_token)),
    "md5 missing": (400, "invalid_field", lambda w: w.api.call(
        "POST", upload_path(w.recording_id, 0),
        {k: v for k, v in good().items() if k != "md5"}, token=w.device.access_token)),
    "timestamp without zone": (400, "invalid_field", lambda w: w.api.call(
        "POST", upload_path(w.recording_id, 0), {**good(), "started_at": "2026-01-01T00:00:00"},
        token=w.device.access_token)),
    "negative segment number": (400, "invalid_field", lambda w: w.api.call(
        "POST", upload_path(w.recording_id, -1), good(), token=w.device.access_token)),
    "absurd segment number": (400, "invalid_field", lambda w: w.api.call(
        "POST", upload_path(w.recording_id, 10**12), good(), token=w.device.access_token)),
    "segment number not a number": (400, "invalid_field", lambda w: w.api.call(
        "POST", upload_path(w.recording_id, "x1"), good(), token=w.device.access_token)),
    "another tenant's recording: upload": (404, "not_found", lambda w: w.api.call(
        "POST", upload_path(w.other_recording_id, 0), good(), token=w.device.access_token)),
    "another tenant's recording: read": (404, "not_found", lambda w: w.api.call(
        "GET", f"/api/v1/recordings/{w.other_recording_id}", token=w.device.access_token)),
    "another tenant's recording: finish": (404, "not_found", lambda w: w.api.call(
        "POST", f"/api/v1/recordings/{w.other_recording_id}/finish",
        token=w.device.access_token)),
    "another tenant's recording: complete": (404, "not_found", lambda w: w.api.call(
        "POST", f"/api/v1/recordings/{w.other_recording_id}/segments/0/complete",
        token=w.device.access_token)),
    "unknown recording": (404, "not_found", lambda w: w.api.call(
        "POST", upload_path("00000000-0000-0000-0000-000000000000", 0), good(),
        token=w.device.access_token)),
    "malformed JSON": (400, "malformed_json", lambda w: w.api.call(
        "POST", upload_path(w.recording_id, 0), body=b'{"size": 1,',
        headers={"Content-Type": "application/json"}, token=w.device.access_token)),
    "JSON that is not an object": (400, "invalid_field", lambda w: w.api.call(
        "POST", "/api/v1/recordings", [1, 2], token=w.device.access_token)),
    "empty body": (400, "malformed_json", lambda w: w.api.call(
        "POST", "/api/v1/recordings", body=b"", token=w.device.access_token)),
    "oversized body": (413, "body_too_large", lambda w: w.api.call(
        "POST", upload_path(w.recording_id, 0), body=b"x" * (2 * 1024 * 1024),
        token=w.device.access_token)),
    "no token": (401, "unauthenticated", lambda w: w.api.call(
        "POST", "/api/v1/recordings", {"started_at": "2026-01-01T00:00:00Z"})),
    "forged token": (401, "invalid_token", lambda w: w.api.call(
        "POST", "/api/v1/recordings", {"started_at": "2026-01-01T00:00:00Z"},
        token=w.device.access_token[:-4] + "AAAA")),
    "refresh token used as access token": (401, "invalid_token", lambda w: w.api.call(
        "POST", "/api/v1/recordings", {"started_at": "2026-01-01T00:00:00Z"},
        token=w.device.refresh_token)),
    "unknown refresh token": (401, "invalid_token", lambda w: w.api.call(
        "POST", "/api/v1/devices/token", {"refresh_token": "brd_unknown"})),
    "wrong method": (405, "method_not_allowed", lambda w: w.api.call(
        "DELETE", f"/api/v1/recordings/{w.recording_id}", token=w.device.access_token)),
    "unknown route": (404, "not_found", lambda w: w.api.call("GET", "/api/v1/nothing-here")),
    "heartbeat interval over an hour": (400, "invalid_field", lambda w: w.api.call(
        "POST", "/api/v1/devices/heartbeat", {**BEAT, "interval": 3601},
        token=w.device.access_token)),
    "heartbeat settings not numbers": (400, "invalid_field", lambda w: w.api.call(
        "POST", "/api/v1/devices/heartbeat", {**BEAT, "settings": {"fps": "fast"}},
        token=w.device.access_token)),
    "heartbeat settings negative": (400, "invalid_field", lambda w: w.api.call(
        "POST", "/api/v1/devices/heartbeat", {**BEAT, "settings": {"idle_seconds": -1}},
        token=w.device.access_token)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_clearly_and_changes_nothing(
    world: World, broker: BrokerProcess, case: str
) -> None:
    status, code, send = CASES[case]
    before = snapshot(broker.database_url)

    reply = send(world)

    assert reply.status == status, reply.raw[:300]
    assert reply.body["error"] == code
    assert isinstance(reply.body["message"], str)
    assert reply.body["message"]
    assert snapshot(broker.database_url) == before
