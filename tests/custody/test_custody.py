"""Chain of custody through the real broker (SQLite and PostgreSQL) and moto over HTTP.

A device enrolled with an Ed25519 public key signs each segment's record; the broker refuses
a forged signature, a broken chain link or a record moved to another seq, and
`admin verify-recording` reports objects that went missing, were replaced or swapped in the
bucket — reading only their stored checksums.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker import admin
from shared.custody import GENESIS, CustodyRecord, encode_public_key, sign
from tests.support.api import (
    Api,
    Device,
    Operator,
    Segment,
    Tenant,
    enrollment_code,
    make_user,
    put_with_grant,
    random_segment,
    start_recording,
)
from tests.support.broker import BrokerProcess, broker_script
from tests.support.s3 import S3Endpoint


@dataclass
class Signer:
    device: Device
    key: Ed25519PrivateKey

    def proof(self, recording_id: str, seq: int, segment: Segment, prev: str) -> dict[str, str]:
        record = record_for(recording_id, seq, segment, prev)
        return {"prev": prev, "signature": sign(self.key, record)}


def record_for(recording_id: str, seq: int, segment: Segment, prev: str) -> CustodyRecord:
    sha = base64.b64encode(hashlib.sha256(segment.data).digest()).decode()
    return CustodyRecord(
        recording_id=recording_id, seq=seq, size=len(segment.data), sha256=sha, prev=prev
    )


@pytest.fixture
def signer(api: Api, broker: BrokerProcess, tenant: Tenant) -> Signer:
    key = Ed25519PrivateKey.generate()
    user_id = make_user(broker, tenant)
    reply = api.call("POST", "/api/v1/devices/enroll", {
        "code": enrollment_code(broker, tenant, user_id), "name": "signed workstation",
        "public_key": encode_public_key(key.public_key()),
    })
    assert reply.status == 201, reply.body
    body = reply.body
    device = Device(tenant, user_id, body["device_id"], body["access_token"],
                    body["refresh_token"])
    return Signer(device, key)


def upload(api: Api, signer: Signer, recording_id: str, seq: int, segment: Segment,
           prev: str, *, proof: dict[str, str] | None = None) -> Any:
    body = segment.declaration(custody=proof or signer.proof(recording_id, seq, segment, prev))
    return api.call("POST", f"/api/v1/recordings/{recording_id}/segments/{seq}/upload", body,
                    token=signer.device.access_token)


def record_segments(api: Api, signer: Signer, count: int) -> tuple[str, list[Segment]]:
    recording_id = start_recording(api, signer.device)
    prev = GENESIS
    segments = []
    for seq in range(count):
        segment = random_segment(2048)
        grant = upload(api, signer, recording_id, seq, segment, prev)
        assert grant.status == 200, grant.body
        assert put_with_grant(grant.body, segment.data).status == 200
        done = api.call("POST", f"/api/v1/recordings/{recording_id}/segments/{seq}/complete",
                        token=signer.device.access_token)
        assert done.status == 200, done.body
        prev = record_for(recording_id, seq, segment, prev).digest()
        segments.append(segment)
    return recording_id, segments


def verify_cli(broker: BrokerProcess, tenant: Tenant, recording_id: str
               ) -> tuple[int, dict[str, Any]]:
    result = subprocess.run(
        [str(broker_script()), "admin", "verify-recording", "--tenant", tenant.name,
         recording_id],
        env=dict(broker.env), capture_output=True, text=True, timeout=120, check=False,
        stdin=subprocess.DEVNULL,
    )
    return result.returncode, json.loads(result.stdout)


def verify(broker: BrokerProcess, tenant: Tenant, recording_id: str) -> dict[str, Any]:
    report: dict[str, Any] = Operator(broker).run(
        admin.verify_recording, tenant=tenant.tenant_id, recording=recording_id
    )
    return report


def findings(report: dict[str, Any]) -> set[tuple[int, str]]:
    return {(f["seq"], f["kind"]) for f in report["findings"]}


def test_a_signed_recording_verifies(
    api: Api, broker: BrokerProcess, tenant: Tenant, signer: Signer
) -> None:
    recording_id, _ = record_segments(api, signer, 3)

    info = api.call("GET", f"/api/v1/recordings/{recording_id}", token=signer.device.access_token)
    hashes = [s["record_hash"] for s in info.body["segments"]]
    assert len(set(hashes)) == 3
    assert all(h and len(h) == 64 for h in hashes)
    code, report = verify_cli(broker, tenant, recording_id)
    assert code == 0, report
    assert report == {"recording_id": recording_id, "ok": True, "segments": 3, "verified": 3,
                      "record_format": "v1", "record_versions": {"v1": 3},
                      "times_signed": False, "gaps": 0, "signed_gaps": 0, "findings": []}


def test_forged_broken_or_moved_records_are_refused(
    api: Api, broker: BrokerProcess, tenant: Tenant, signer: Signer
) -> None:
    recording_id, (first,) = record_segments(api, signer, 1)
    prev = record_for(recording_id, 0, first, GENESIS).digest()
    segment = random_segment(2048)

    other_key = Ed25519PrivateKey.generate()
    forged = {"prev": prev, "signature": sign(other_key, record_for(recording_id, 1, segment,
                                                                    prev))}
    broken = signer.proof(recording_id, 1, segment, GENESIS)  # signed, but links to nothing
    moved = signer.proof(recording_id, 2, segment, prev)  # signed for seq 2, sent as seq 1
    other_bytes = signer.proof(recording_id, 1, random_segment(2048), prev)
    for name, proof in (("forged", forged), ("broken link", broken), ("moved", moved),
                        ("other bytes", other_bytes)):
        reply = upload(api, signer, recording_id, 1, segment, prev, proof=proof)
        assert reply.status == 409, name
        assert reply.body["error"] == "custody_rejected", name

    unsigned = api.call("POST", f"/api/v1/recordings/{recording_id}/segments/1/upload",
                        segment.declaration(), token=signer.device.access_token)
    assert unsigned.status == 409
    assert unsigned.body["error"] == "custody_rejected"
    # the genuine record still goes through: nothing was stored by the refusals
    assert upload(api, signer, recording_id, 1, segment, prev).status == 200


def test_missing_altered_and_swapped_objects_are_reported(
    api: Api, broker: BrokerProcess, tenant: Tenant, signer: Signer, s3_endpoint: S3Endpoint
) -> None:
    recording_id, segments = record_segments(api, signer, 5)
    keys = [s["key"] for s in api.call(
        "GET", f"/api/v1/recordings/{recording_id}", token=signer.device.access_token
    ).body["segments"]]
    s3 = s3_endpoint.client()  # the test's own credentials: out of band, not the broker's
    s3.delete_object(Bucket=tenant.bucket, Key=keys[1])  # missing
    s3.delete_object(Bucket=tenant.bucket, Key=keys[2])  # replaced by other bytes
    s3.put_object(Bucket=tenant.bucket, Key=keys[2], Body=random_segment(2048).data,
                  ChecksumAlgorithm="SHA256")
    for a in (3, 4):  # swapped
        s3.delete_object(Bucket=tenant.bucket, Key=keys[a])
    for a, b in ((3, 4), (4, 3)):
        s3.put_object(Bucket=tenant.bucket, Key=keys[a], Body=segments[b].data,
                      ChecksumAlgorithm="SHA256")

    report = verify(broker, tenant, recording_id)
    assert report["ok"] is False
    assert findings(report) == {(1, "missing"), (2, "altered"), (3, "reordered"),
                                (4, "reordered")}
    assert report["verified"] == 1
    code, printed = verify_cli(broker, tenant, recording_id)
    assert code == 1
    assert findings(printed) == findings(report)


def test_an_unsigned_device_still_uploads_but_does_not_verify(
    api: Api, broker: BrokerProcess, tenant: Tenant
) -> None:
    from tests.support.api import enroll

    device = enroll(api, broker, tenant)  # an older agent: no key registered
    recording_id = start_recording(api, device)
    segment = random_segment(1024)
    grant = api.call("POST", f"/api/v1/recordings/{recording_id}/segments/0/upload",
                     segment.declaration(), token=device.access_token)
    assert grant.status == 200
    assert put_with_grant(grant.body, segment.data).status == 200
    assert api.call("POST", f"/api/v1/recordings/{recording_id}/segments/0/complete",
                    token=device.access_token).status == 200
    assert findings(verify(broker, tenant, recording_id)) == {(0, "unsigned")}
