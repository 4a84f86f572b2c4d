"""Heartbeats, all real: the agent program reports its status to the broker process, and the
admin's device list shows it — and shows the device silent once three beats are missed."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.idle import DEFAULT_IDLE_SECONDS
from tests.identity.people import person
from tests.resilience.helpers import Site, running, site
from tests.support.api import Api
from tests.support.broker import BrokerProcess
from tests.support.display import XDisplay
from tests.support.s3 import S3Endpoint

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def place(broker: BrokerProcess, s3_endpoint: S3Endpoint, tmp_path: Path) -> Iterator[Site]:
    with site(broker, s3_endpoint, tmp_path) as s:
        yield s


def test_the_agent_reports_its_status_and_falls_silent_when_gone(
    place: Site, xvfb: XDisplay
) -> None:
    assert place.device()["last_seen_at"] is None
    # Stopped by SIGTERM once its status has been read, not by a short --duration: on a busy
    # machine the first upload can come so late that the run would be over already.
    with running(place.home, xvfb.display, "--fps", "2", "--segment-seconds", "1",
                 "--heartbeat-seconds", "1", "--duration", "120") as agent:
        rid = agent.recording_id
        agent.wait_uploaded(1)
        live = place.device()
        agent.signal(signal.SIGTERM)
        assert agent.finish() == 0, agent.stderr
    assert live["silent"] is False
    assert live["last_status"]["state"] in {"recording", "stopping", "stopped"}
    assert live["last_status"]["recording_id"] == rid
    assert live["last_status"]["interval"] == 1
    # what it records with (no policy set: its flags over its defaults)
    assert live["last_status"]["settings"] == {
        "fps": 2, "segment_seconds": 1, "idle_seconds": DEFAULT_IDLE_SECONDS,
        "quality": "standard",
    }

    final = place.device()
    assert final["last_status"]["state"] == "exited"  # the beat sent at stop
    assert final["last_status"]["last_upload"]["seq"] >= 0
    assert final["silent"] is False
    time.sleep(3.5)  # three intervals of one second without a word
    assert place.device()["silent"] is True
    # the same list, as an admin sees it through the API
    api = Api(place.broker.url)
    admin = person(api, place.broker, place.tenant, "admin")
    reply = api.call("GET", "/api/v1/admin/devices", token=admin.access_token)
    assert reply.status == 200
    (listed,) = [d for d in reply.body["devices"] if d["device_id"] == final["device_id"]]
    assert listed["silent"] is True
    assert listed["last_status"]["state"] == "exited"
