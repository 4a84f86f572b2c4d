"""The capture state a device reports in its heartbeat (`capture`: ok, or blocked with a
reason and since when) shows in the admin's device list and in the manager's day view; the
gap `capture_blocked` carries a time range like a pause and is named in the day's gaps."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.identity.people import Client, Person, person
from tests.support.api import Api, Device, Tenant, enroll, random_segment
from tests.support.broker import BrokerProcess


@pytest.fixture(scope="module")
def admin(broker: BrokerProcess, tenant: Tenant) -> Person:
    return person(Client(broker.url), broker, tenant, "admin")


@pytest.fixture
def device(api: Api, broker: BrokerProcess, tenant: Tenant) -> Device:
    return enroll(api, broker, tenant)


def beat(api: Api, device: Device, state: str, capture: dict[str, Any] | None) -> None:
    body: dict[str, Any] = {"state": state, "spool_bytes": 0, "spool_segments": 0, "errors": 0,
                            "interval": 60}
    if capture is not None:
        body["capture"] = capture
    reply = api.call("POST", "/api/v1/devices/heartbeat", body, token=device.access_token)
    assert reply.status == 200, reply.body


def listed(api: Api, admin: Person, device: Device) -> dict[str, Any]:
    reply = api.call("GET", "/api/v1/admin/devices", token=admin.access_token)
    assert reply.status == 200, reply.body
    (found,) = [d for d in reply.body["devices"] if d["device_id"] == device.device_id]
    return dict(found)


def day_page(api: Api, admin: Person, device: Device) -> str:
    reply = api.call("GET", f"/employees/{device.user_id}", token=admin.access_token)
    assert reply.status == 200, reply.raw[:500]
    return reply.raw.decode()


def text_of(page: str) -> str:
    """A page's text as a reader sees it (times are `<time>` elements, UTC on hover; the
    test's client sends no zone, so both read in UTC)."""
    return re.sub(r"<[^>]+>", "", page)


def test_the_admin_and_the_manager_see_a_blocked_capture(
    api: Api, admin: Person, device: Device
) -> None:
    assert listed(api, admin, device)["capture"] is None  # never reported
    since = "2030-01-02T03:04:05Z"
    beat(api, device, "capture_blocked",
         {"state": "blocked", "reason": "no_permission", "since": since})
    shown = listed(api, admin, device)
    assert shown["capture"] == {"state": "blocked", "reason": "no_permission", "since": since}
    assert shown["last_status"]["capture"]["reason"] == "no_permission"
    page = text_of(day_page(api, admin, device))
    assert ("Screen capture blocked on test workstation (no permission) since "
            "2030-01-02 03:04:05") in page

    beat(api, device, "recording", {"state": "ok"})
    assert listed(api, admin, device)["capture"] == {"state": "ok"}
    assert "Screen capture blocked on" not in day_page(api, admin, device)
    beat(api, device, "capture_blocked",
         {"state": "blocked", "reason": "display_blank", "since": since})
    beat(api, device, "exited", {"state": "blocked", "reason": "display_blank", "since": since})
    assert listed(api, admin, device)["capture"] is None, "an exited agent captures nothing"


def test_a_bad_capture_state_is_refused(api: Api, device: Device) -> None:
    reply = api.call("POST", "/api/v1/devices/heartbeat", {
        "state": "recording", "spool_bytes": 0, "spool_segments": 0, "errors": 0,
        "capture": {"state": "blocked", "reason": "bored", "since": "2030-01-02T03:04:05Z"},
    }, token=device.access_token)
    assert reply.status == 400
    assert reply.body["message"].startswith("capture.reason:")


def test_the_day_view_names_a_capture_blocked_gap(
    api: Api, admin: Person, device: Device
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(seconds=60)
    reply = api.call("POST", "/api/v1/recordings", {"started_at": start.isoformat()},
                     token=device.access_token)
    assert reply.status == 201, reply.body
    rid = reply.body["recording_id"]

    def declare(seq: int, at: datetime) -> None:
        answer = api.call(
            "POST", f"/api/v1/recordings/{rid}/segments/{seq}/upload",
            random_segment(1024).declaration(started_at=at.isoformat(), duration_ms=5000),
            token=device.access_token,
        )
        assert answer.status == 200, answer.body

    declare(0, start)
    gap = {"seqs": [], "reason": "capture_blocked",
           "from": (start + timedelta(seconds=5)).isoformat(),
           "to": (now - timedelta(seconds=20)).isoformat()}
    reply = api.call("POST", f"/api/v1/recordings/{rid}/gaps", gap, token=device.access_token)
    assert reply.status == 201, reply.body
    (stored,) = reply.body["gaps"]
    assert (stored["reason"], stored["seqs"]) == ("capture_blocked", [])
    declare(1, now - timedelta(seconds=20))

    page = day_page(api, admin, device)
    assert '<span class="why">screen capture blocked</span>' in page
