"""A view URL stops working when its TTL ends, checked by the strict SigV4 gate (moto itself
does not check presigned URLs' expiry), on a broker whose view URLs live 10 s."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
import urllib3

from broker.errors import ConfigError
from broker.settings import Settings
from tests.identity.people import Client, person, verified_recording
from tests.storage.factory import make_gate_tenant
from tests.support.api import enroll
from tests.support.broker import BrokerProcess
from tests.support.s3gate import AccessKey, S3Gate
from tests.web.conftest import SHORT_TTL


def test_a_view_url_stops_working_after_its_ttl(
    short_ttl: BrokerProcess, gate: S3Gate, gate_setup_key: AccessKey
) -> None:
    tenant = make_gate_tenant(short_ttl, gate, gate_setup_key)
    api = Client(short_ttl.url)
    admin = person(api, short_ttl, tenant, "admin")
    recording_id = verified_recording(api, enroll(api, short_ttl, tenant))

    minted = api.call(
        "POST", f"/api/v1/recordings/{recording_id}/segments/0/view", token=admin.access_token
    )
    assert minted.status == 200, minted.body
    expires = datetime.fromisoformat(minted.body["expires_at"].replace("Z", "+00:00"))
    assert abs(expires.timestamp() - time.time() - SHORT_TTL) < 3
    http = urllib3.PoolManager(retries=False)
    fresh = http.request("GET", minted.body["url"])
    assert fresh.status == 200
    assert fresh.headers["Cache-Control"] == "no-store"
    assert len(fresh.data) == 4096

    time.sleep(max(0.0, expires.timestamp() - time.time()) + 1.5)
    expired = http.request("GET", minted.body["url"])
    assert expired.status == 403
    assert b"expired" in expired.data.lower()


@pytest.mark.parametrize("ttl", ["9", "121"])
def test_the_view_url_ttl_is_bounded(ttl: str) -> None:
    with pytest.raises(ConfigError, match="VIEW_URL_TTL"):
        Settings.from_env({"BUCKETREEL_VIEW_URL_TTL": ttl})
