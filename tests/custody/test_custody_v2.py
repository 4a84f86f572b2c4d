"""Custody v2: records sign each segment's start and duration, and gap reports are signed.

Against the real broker (SQLite and PostgreSQL) and moto. Re-timing segments in the database
makes `admin verify-recording` report them re-timed; a forged gap report is refused at the
broker and one forged in the database is reported; a recording of v1 records (an older agent)
still verifies and is named v1.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import update

from broker import admin
from broker.db.engine import create_engine
from broker.db.schema import recording_gaps, segments
from broker.db.scope import TenantScope
from shared.custody import (
    GENESIS,
    V1,
    V2,
    GapRecord,
    sign,
)
from shared.wire import format_timestamp, parse_timestamp
from tests.support.api import (
    Api,
    Operator,
    Tenant,
    put_with_grant,
    random_segment,
    start_recording,
)
from tests.support.broker import BrokerProcess
from tests.support.custody import Signer, enroll_signer, record


@pytest.fixture
def signer(api: Api, broker: BrokerProcess, tenant: Tenant) -> Signer:
    return enroll_signer(api, broker, tenant, "v2 workstation")


def record_segments(api: Api, signer: Signer, count: int, version: int) -> str:
    recording_id = start_recording(api, signer.device)
    prev = GENESIS
    for seq in range(count):
        segment = random_segment(2048)
        declared = segment.declaration(duration_ms=1000 + seq)
        signed = record(recording_id, seq, segment, declared, prev, version)
        declared["custody"] = {"prev": prev, "signature": sign(signer.key, signed)}
        grant = api.call("POST", f"/api/v1/recordings/{recording_id}/segments/{seq}/upload",
                         declared, token=signer.device.access_token)
        assert grant.status == 200, grant.body
        assert put_with_grant(grant.body, segment.data).status == 200
        done = api.call("POST", f"/api/v1/recordings/{recording_id}/segments/{seq}/complete",
                        token=signer.device.access_token)
        assert done.status == 200, done.body
        prev = signed.digest()
    return recording_id


def verify(broker: BrokerProcess, tenant: Tenant, recording_id: str) -> dict[str, Any]:
    report: dict[str, Any] = Operator(broker).run(
        admin.verify_recording, tenant=tenant.tenant_id, recording=recording_id
    )
    return report


def findings(report: dict[str, Any]) -> set[tuple[int, str]]:
    return {(f["seq"], f["kind"]) for f in report["findings"]}


def in_database(broker: BrokerProcess, tenant_id: str, change: Any) -> None:
    """Out of band, as someone with write access to the broker's database would."""

    async def go() -> None:
        engine = create_engine(broker.database_url)
        try:
            async with engine.begin() as conn:
                await change(TenantScope(conn, tenant_id))
        finally:
            await engine.dispose()

    asyncio.run(go())


def test_retiming_every_segment_in_the_database_is_reported(
    api: Api, broker: BrokerProcess, tenant: Tenant, signer: Signer
) -> None:
    recording_id = record_segments(api, signer, 3, V2)
    intact = verify(broker, tenant, recording_id)
    assert intact["ok"] is True, intact
    assert (intact["record_format"], intact["times_signed"]) == ("v2", True)
    assert intact["record_versions"] == {"v2": 3}

    async def retime(scope: TenantScope) -> None:
        for row in await scope.all(segments, segments.c.recording_id == recording_id):
            moved: datetime = row.started_at + timedelta(hours=1)
            await scope.execute(
                update(segments).where(segments.c.id == row.id)
                .values(started_at=moved, duration_ms=row.duration_ms + 500)
            )

    in_database(broker, tenant.tenant_id, retime)
    report = verify(broker, tenant, recording_id)
    assert report["ok"] is False
    assert findings(report) == {(0, "retimed"), (1, "retimed"), (2, "retimed")}


def test_a_v1_recording_still_verifies_and_is_named_v1(
    api: Api, broker: BrokerProcess, tenant: Tenant, signer: Signer
) -> None:
    recording_id = record_segments(api, signer, 2, V1)
    report = verify(broker, tenant, recording_id)
    assert report["ok"] is True, report
    assert (report["record_format"], report["times_signed"]) == ("v1", False)
    assert report["record_versions"] == {"v1": 2}


def test_gap_reports_are_signed_checked_at_the_broker_and_in_verification(
    api: Api, broker: BrokerProcess, tenant: Tenant, signer: Signer
) -> None:
    recording_id = record_segments(api, signer, 1, V2)
    path = f"/api/v1/recordings/{recording_id}/gaps"
    gap = {"seqs": [3, 1], "reason": "spool_limit"}
    genuine = sign(signer.key, GapRecord.of(recording_id, [1, 3], "spool_limit", None, None))
    other = Ed25519PrivateKey.generate()
    forged = sign(other, GapRecord.of(recording_id, [1, 3], "spool_limit", None, None))
    elsewhere = sign(signer.key, GapRecord.of(recording_id, [1, 3], "refused", None, None))

    for bad in (forged, elsewhere):
        refused = api.call("POST", path, {**gap, "signature": bad},
                           token=signer.device.access_token)
        assert refused.status == 409, refused.body
        assert refused.body["error"] == "custody_rejected"
    now = datetime.now(UTC)
    pause_from = format_timestamp(now - timedelta(seconds=1, microseconds=321))
    pause_to = format_timestamp(now)
    pause = sign(signer.key, GapRecord.of(
        recording_id, [], "idle", parse_timestamp(pause_from), parse_timestamp(pause_to)))
    for body in ({**gap, "signature": genuine},
                 {"seqs": [], "reason": "idle", "from": pause_from, "to": pause_to,
                  "signature": pause}):
        accepted = api.call("POST", path, body, token=signer.device.access_token)
        assert accepted.status == 201, accepted.body
    report = verify(broker, tenant, recording_id)
    assert (report["gaps"], report["signed_gaps"]) == (2, 2)
    assert findings(report) == {(1, "missing"), (3, "missing")}

    unsigned = api.call("POST", path, {"seqs": [4], "reason": "refused"},
                        token=signer.device.access_token)
    assert unsigned.status == 201, "an agent before v2 sends unsigned gaps"

    async def stretch(scope: TenantScope) -> None:  # the pause moved, in the database
        await scope.execute(
            update(recording_gaps)
            .where(recording_gaps.c.recording_id == recording_id,
                   recording_gaps.c.reason == "idle")
            .values(gap_to=now + timedelta(hours=1))
        )

    in_database(broker, tenant.tenant_id, stretch)
    report = verify(broker, tenant, recording_id)
    assert {(-1, "forged_gap"), (4, "unsigned_gap")} <= findings(report)


def test_a_record_altered_in_the_database_after_its_grant_is_refused_at_completion(
    api: Api, broker: BrokerProcess, tenant: Tenant, signer: Signer
) -> None:
    """The completion checks the stored record again (the broker remembers the signature
    checks it made moments before, by key, record and signature: a record altered since
    is other bytes, and its check is made afresh)."""
    recording_id = start_recording(api, signer.device)
    segment = random_segment(2048)
    declared = segment.declaration(duration_ms=1000)
    signed = record(recording_id, 0, segment, declared, GENESIS, V2)
    declared["custody"] = {"prev": GENESIS, "signature": sign(signer.key, signed)}
    grant = api.call("POST", f"/api/v1/recordings/{recording_id}/segments/0/upload",
                     declared, token=signer.device.access_token)
    assert grant.status == 200, grant.body
    assert put_with_grant(grant.body, segment.data).status == 200

    # Re-timed with its record's hash made to match (anyone can hash; only the device signs):
    # only the signature check can tell.
    retimed = record(recording_id, 0, segment, {**declared, "duration_ms": 1500}, GENESIS, V2)

    async def retime(scope: TenantScope) -> None:
        row, = await scope.all(segments, segments.c.recording_id == recording_id)
        await scope.execute(
            update(segments).where(segments.c.id == row.id)
            .values(duration_ms=1500, record_hash=retimed.digest())
        )

    in_database(broker, tenant.tenant_id, retime)
    done = api.call("POST", f"/api/v1/recordings/{recording_id}/segments/0/complete",
                    token=signer.device.access_token)
    assert done.status == 409, done.body
    assert done.body["error"] == "custody_rejected"
    assert "does not verify" in done.body["message"], done.body
