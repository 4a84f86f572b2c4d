"""Device credentials: rotation of refresh tokens, theft detection, and whose recording is whose."""

from __future__ import annotations

from tests.support.api import Api, Device, Tenant, enroll, now_iso, start_recording
from tests.support.broker import BrokerProcess


def refresh(api: Api, token: str):
    return api.call("POST", "/api/v1/devices/token", {"refresh_token": token})


def test_refresh_rotates_and_the_old_token_stops_working(api: Api, device: Device) -> None:
    first = refresh(api, device.refresh_token)
    assert first.status == 200
    assert first.body["device_id"] == device.device_id
    assert first.body["refresh_token"] != device.refresh_token

    again = refresh(api, device.refresh_token)

    assert (again.status, again.body["error"]) == (401, "invalid_token")
    new_access = first.body["access_token"]
    assert api.call("POST", "/api/v1/recordings", {"started_at": now_iso()},
                    token=new_access).status == 201


def test_reusing_a_refresh_token_revokes_the_whole_family(api: Api, device: Device) -> None:
    rotated = refresh(api, device.refresh_token).body["refresh_token"]
    assert refresh(api, device.refresh_token).status == 401  # the stolen copy is replayed

    assert refresh(api, rotated).status == 401, "the legitimate holder is cut off too"


def test_a_device_reads_its_own_recording_only(
    api: Api, broker: BrokerProcess, tenant: Tenant, device: Device
) -> None:
    recording_id = start_recording(api, device)
    colleague = enroll(api, broker, tenant)

    mine = api.call("GET", f"/api/v1/recordings/{recording_id}", token=device.access_token)
    theirs = api.call("GET", f"/api/v1/recordings/{recording_id}", token=colleague.access_token)

    assert mine.status == 200
    assert mine.body["recording_id"] == recording_id
    assert mine.body["user_id"] == device.user_id
    assert mine.body["device_id"] == device.device_id
    assert mine.body["state"] == "recording"
    assert mine.body["segments"] == []
    assert theirs.status == 404


def test_each_enrollment_code_makes_one_device(
    api: Api, broker: BrokerProcess, tenant: Tenant
) -> None:
    first = enroll(api, broker, tenant)
    second = enroll(api, broker, tenant, first.user_id)
    assert first.device_id != second.device_id
    assert first.user_id == second.user_id
