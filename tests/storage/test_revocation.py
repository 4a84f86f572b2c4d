"""Revocation by rotation (DESIGN G6) at the API level, through the strict SigV4 gate: the
customer deactivates the broker's key; the agent's PUT fails 403; its re-grant makes the
broker ask the bucket about the tenant's canary object, which answers 403, so the storage is
marked access_revoked (visible to admins, audited). New keys from the admin: grants work again
and the segment arrives, byte for byte.
"""

from __future__ import annotations

import hashlib

from broker import admin
from tests.identity.people import audit_entries, person
from tests.storage.factory import BROKER_KEY_LABEL, make_gate_tenant
from tests.support.api import (
    Api,
    Operator,
    Reply,
    enroll,
    put_with_grant,
    random_segment,
    start_recording,
)
from tests.support.broker import BrokerProcess
from tests.support.s3gate import AccessKey, S3Gate


def test_a_deactivated_key_marks_access_revoked_and_new_keys_resume(
    broker: BrokerProcess, s3_gate: S3Gate, setup_key: AccessKey
) -> None:
    api = Api(broker.url)
    tenant = make_gate_tenant(broker, s3_gate, setup_key)
    boss = person(api, broker, tenant, "admin")
    device = enroll(api, broker, tenant)
    recording_id = start_recording(api, device)
    segments = [random_segment(8192) for _ in range(2)]
    path = f"/api/v1/recordings/{recording_id}/segments"

    def grant(seq: int) -> Reply:
        return api.call("POST", f"{path}/{seq}/upload", segments[seq].declaration(),
                        token=device.access_token)

    first = grant(0)
    assert put_with_grant(first.body, segments[0].data).status == 200
    assert api.call("POST", f"{path}/0/complete", token=device.access_token).status == 200

    before = grant(1)
    s3_gate.keys.deactivate(tenant.key.key_id)  # the customer rotates the broker out
    refused = put_with_grant(before.body, segments[1].data)
    assert refused.status == 403

    again = grant(1)  # the agent's retry: a fresh grant for the same segment
    assert (again.status, again.body["error"]) == (503, "storage_unavailable"), again.body
    assert "access revoked" in again.body["message"]
    status = api.call("GET", "/api/v1/admin/storage", token=boss.access_token).body
    assert status["state"] == "access_revoked"
    assert "403" in status["state_reason"]
    assert Operator(broker).run(admin.storage_status, tenant=tenant.tenant_id)["state"] == (
        "access_revoked")
    revoked = [e for e in audit_entries(broker, tenant.tenant_id)
               if e.action == "storage.access_revoked"]
    assert len(revoked) == 1
    assert grant(1).status == 503  # still revoked; marked once only
    assert len([e for e in audit_entries(broker, tenant.tenant_id)
                if e.action == "storage.access_revoked"]) == 1

    new_key = s3_gate.keys.add(label=BROKER_KEY_LABEL)
    saved = Operator(broker).run(
        admin.set_storage, tenant=tenant.tenant_id, bucket=tenant.bucket, region=s3_gate.region,
        endpoint_url=s3_gate.url, prefix=tenant.prefix, access_key_id=new_key.key_id,
        secret_access_key=new_key.secret, accept_risk=True,  # moto has no IAM behind the gate
    )
    assert saved["check"]["can_write"] is True
    assert api.call("GET", "/api/v1/admin/storage", token=boss.access_token).body["state"] == "ok"
    assert "storage.access_restored" in [e.action for e in audit_entries(broker, tenant.tenant_id)]

    resumed = grant(1)
    assert resumed.status == 200, resumed.body
    assert f"X-Amz-Credential={new_key.key_id}" in resumed.body["url"]
    assert put_with_grant(resumed.body, segments[1].data).status == 200
    done = api.call("POST", f"{path}/1/complete", token=device.access_token)
    assert (done.status, done.body) == (200, {"state": "verified"})
    info = api.call("GET", f"/api/v1/recordings/{recording_id}", token=device.access_token).body
    client = s3_gate.client(setup_key)
    for segment, listed in zip(segments, info["segments"], strict=True):
        assert listed["state"] == "verified"
        data = client.get_object(Bucket=tenant.bucket, Key=listed["key"])["Body"].read()
        assert hashlib.sha256(data).digest() == hashlib.sha256(segment.data).digest()
