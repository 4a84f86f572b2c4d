"""Times an agent declares are bounded, and the day view survives rows stored before that.

The recorded employee controls the agent. One segment declared at 9999-12-31T23:30Z once
made the oversight page answer 500 for every day. Now the broker admits a recording start,
segment start and gap range only within [recording start - skew, now + skew], segments in
seq order without overlap, with a 400 naming the field otherwise; the day view leaves out
rows no day can show; and a day nobody can ask for (`?day=9999-12-31`) is a 400.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from broker.db.database import Database
from broker.db.schema import recordings, segments
from broker.db.scope import TenantScope
from tests.identity.people import Client, Person, person
from tests.support.api import Api, Device, Reply, Tenant, enroll, random_segment
from tests.support.broker import BrokerProcess

FAR = "9999-12-31T23:30:00Z"


def iso(moment: datetime) -> str:
    return moment.isoformat()


def start(api: Api, device: Device, at: str) -> Reply:
    return api.call("POST", "/api/v1/recordings", {"started_at": at}, token=device.access_token)


def declare(api: Api, device: Device, recording_id: str, seq: int, **declared: Any) -> Reply:
    return api.call(
        "POST", f"/api/v1/recordings/{recording_id}/segments/{seq}/upload",
        random_segment(1024).declaration(**declared), token=device.access_token,
    )


@pytest.fixture(scope="module")
def admin(broker: BrokerProcess, tenant: Tenant) -> Person:
    return person(Client(broker.url), broker, tenant, "admin")


@pytest.fixture
def device(api: Api, broker: BrokerProcess, tenant: Tenant) -> Device:
    return enroll(api, broker, tenant)


def refused(reply: Reply, field: str) -> bool:
    return (
        reply.status == 400
        and reply.body["error"] == "invalid_field"
        and reply.body["message"].startswith(f"{field}:")
    )


def test_a_recording_start_far_from_now_is_refused(api: Api, device: Device) -> None:
    now = datetime.now(UTC)
    for at in (FAR, iso(now + timedelta(hours=1)), iso(now - timedelta(days=2)),
               "0001-01-01T00:00:00Z"):
        reply = start(api, device, at)
        assert refused(reply, "started_at"), (at, reply.status, reply.body)
    assert start(api, device, iso(now + timedelta(seconds=30))).status == 201, "skew allowed"


def test_segment_times_are_bounded_and_in_seq_order(api: Api, device: Device) -> None:
    now = datetime.now(UTC)
    recording = start(api, device, iso(now - timedelta(seconds=60))).body["recording_id"]

    assert refused(declare(api, device, recording, 0, started_at=FAR), "started_at")
    assert refused(
        declare(api, device, recording, 0, started_at=iso(now - timedelta(hours=1))),
        "started_at",
    ), "before the recording started"
    assert refused(
        declare(api, device, recording, 0, started_at=iso(now), duration_ms=3_600_000),
        "duration_ms",
    ), "ends in the future"

    first = now - timedelta(seconds=50)
    ok = declare(api, device, recording, 1, started_at=iso(first), duration_ms=10_000)
    assert ok.status == 200, ok.body
    overlapping = declare(
        api, device, recording, 2, started_at=iso(first + timedelta(seconds=5)),
        duration_ms=10_000,
    )
    assert refused(overlapping, "started_at")
    backwards = declare(
        api, device, recording, 0, started_at=iso(first + timedelta(seconds=20)),
        duration_ms=1000,
    )
    assert refused(backwards, "started_at"), "seq 0 after seq 1"
    after = declare(
        api, device, recording, 2, started_at=iso(first + timedelta(seconds=10)),
        duration_ms=10_000,
    )
    assert after.status == 200, after.body

    info = api.call("GET", f"/api/v1/recordings/{recording}", token=device.access_token).body
    assert [s["seq"] for s in info["segments"]] == [1, 2], "nothing refused was stored"


def test_gap_times_are_bounded(api: Api, device: Device) -> None:
    now = datetime.now(UTC)
    recording = start(api, device, iso(now)).body["recording_id"]
    path = f"/api/v1/recordings/{recording}/gaps"

    def gap(since: str, until: str) -> Reply:
        return api.call("POST", path, {"seqs": [], "reason": "idle", "from": since, "to": until},
                        token=device.access_token)

    assert refused(gap(iso(now), FAR), "to")
    assert refused(gap(iso(now - timedelta(days=1)), iso(now)), "from")
    assert refused(gap(iso(now + timedelta(seconds=20)), iso(now)), "to"), "to before from"
    assert gap(iso(now), iso(now + timedelta(seconds=1))).status == 201


async def _store_bad_rows(database_url: str, device: Device, recording: str) -> None:
    """Rows as an agent could store them before the bounds: far future, at the calendar's
    end, and long before anything; and a segment 5 at the calendar's end in `recording`."""
    db = Database.from_url(database_url)
    now = datetime.now(UTC)
    try:
        async with db.transaction() as conn:
            scope = TenantScope(conn, device.tenant.tenant_id)
            await scope.insert(
                segments, id=str(uuid.uuid4()), recording_id=recording, seq=5,
                object_key="bad/end", state="pending", size=1, sha256="s", md5="m",
                started_at=datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
                duration_ms=3_600_000, created_at=now,
            )
            for n, at in enumerate((
                datetime(9999, 12, 31, 23, 30, tzinfo=UTC),
                datetime(9999, 12, 30, 12, tzinfo=UTC),
                datetime(1, 1, 1, tzinfo=UTC),
            )):
                recording_id = str(uuid.uuid4())
                await scope.insert(
                    recordings, id=recording_id, user_id=device.user_id,
                    device_id=device.device_id, state="finished", started_at=at, created_at=now,
                )
                await scope.insert(
                    segments, id=str(uuid.uuid4()), recording_id=recording_id, seq=0,
                    object_key=f"bad/{n}", state="pending", size=1, sha256="s", md5="m",
                    started_at=at, duration_ms=3_600_000, created_at=now,
                )
    finally:
        await db.close()


def test_the_day_view_survives_bad_rows_already_stored(
    api: Api, broker: BrokerProcess, device: Device, admin: Person
) -> None:
    good = start(api, device, iso(datetime.now(UTC))).body["recording_id"]
    assert declare(api, device, good, 0).status == 200
    asyncio.run(_store_bad_rows(broker.database_url, device, good))
    page = f"/employees/{device.user_id}"
    assert refused(declare(api, device, good, 6), "started_at"), "after a segment never ending"
    assert declare(api, device, good, 1).status == 200, "before it: fine"

    default = api.call("GET", page, token=admin.access_token)
    assert default.status == 200, default.raw[:500]
    assert datetime.now(UTC).date().isoformat().encode() in default.raw, "today, not 9999"
    for day in (datetime.now(UTC).date().isoformat(), "9999-12-30", "1970-01-01"):
        reply = api.call("GET", f"{page}?day={day}", token=admin.access_token)
        assert reply.status == 200, (day, reply.raw[:500])


@pytest.mark.parametrize("path", ["/employees/{user}", "/audit", "/api/v1/admin/audit/export"])
@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01", "10000-01-01", "2026-02-30"])
def test_a_day_out_of_range_is_a_400(
    api: Api, device: Device, admin: Person, path: str, day: str
) -> None:
    reply = api.call("GET", path.format(user=device.user_id) + f"?day={day}",
                     token=admin.access_token)
    assert reply.status == 400, (reply.status, reply.raw[:300])
    assert reply.body["error"] == "invalid_field"
    assert reply.body["message"].startswith("day:")
