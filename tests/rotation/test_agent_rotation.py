"""Revocation by rotation (DESIGN G6) end to end: the real agent records the suite's animated
Xvfb display into a tenant whose bucket is reached only through the strict SigV4 gate
(tests/support/s3gate.py). A few seconds in, the customer deactivates the broker's access key:
the agent's uploads fail with 403 and its segments pile up sealed in the spool, and the broker
marks the storage `access_revoked`. The admin registers a new key and installs it with
set-storage: the agent's retries get grants signed with the new key and every segment recorded
meanwhile arrives. Every segment is counted and hashed: seq 0..N-1, each verified once, each
object in the bucket byte for byte what the broker recorded.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from broker import admin
from shared.bucket.keys import is_segment
from tests.identity.people import audit_entries, person
from tests.resilience.helpers import (
    AGENT,
    agent_env,
    decoded_frames,
    running,
    uploaded_seqs,
)
from tests.storage.factory import BROKER_KEY_LABEL, GateTenant, make_gate_tenant
from tests.support.api import Api, Operator, enrollment_code, make_user
from tests.support.broker import BrokerProcess
from tests.support.display import XDisplay
from tests.support.s3gate import AccessKey, S3Gate

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

FPS, SEGMENT_SECONDS, DURATION = 2, 1, 10
SEGMENTS = DURATION // SEGMENT_SECONDS  # 20 ticks at 2 fps, 2 per segment
OUTAGE = 4.0  # seconds between deactivating the old key and installing the new one
# The agent's backoff (1 s doubling, jitter) after a ~4 s outage retries within ~15 s; the
# drain leaves room for that and fails loudly (segments "NOT uploaded") if it ever is not.
DRAIN = 40


def enroll_agent(broker: BrokerProcess, tenant: GateTenant, home: Path) -> None:
    code = enrollment_code(broker, tenant, make_user(broker, tenant))
    enrolled = subprocess.run(
        [AGENT, "enroll", "--broker", broker.url, "--code", code],
        env=agent_env(home, ""), capture_output=True, text=True, timeout=60, check=False,
    )
    assert enrolled.returncode == 0, enrolled.stderr


def wait_until(what: str, test: Callable[[], bool], timeout: float, stderr: Callable[[], str]
               ) -> None:
    deadline = time.monotonic() + timeout
    while not test():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout} s; agent:\n{stderr()}")
        time.sleep(0.1)


def test_rotation_mid_recording_loses_no_segment(
    broker: BrokerProcess, s3_gate: S3Gate, setup_key: AccessKey, xvfb: XDisplay,
    tmp_path: Path,
) -> None:
    api = Api(broker.url)
    tenant = make_gate_tenant(broker, s3_gate, setup_key)
    old_key = tenant.key
    boss = person(api, broker, tenant, "admin")
    home = tmp_path / "agent"
    enroll_agent(broker, tenant, home)
    spool = home / "spool"

    def storage() -> dict[str, object]:
        reply = api.call("GET", "/api/v1/admin/storage", token=boss.access_token)
        assert reply.status == 200, reply.body
        body: dict[str, object] = reply.body
        return body

    def spooled() -> list[Path]:
        return list(spool.iterdir()) if spool.exists() else []

    assert storage()["state"] == "ok"
    args = ("--fps", str(FPS), "--segment-seconds", str(SEGMENT_SECONDS),
            "--duration", str(DURATION), "--drain-seconds", str(DRAIN))
    with running(home, xvfb.display, *args) as agent:
        rid = agent.recording_id
        agent.wait_uploaded(2, timeout=20)
        s3_gate.keys.deactivate(old_key.key_id)  # the customer rotates the broker out
        cut_at = time.monotonic()
        before_cut = uploaded_seqs(agent.lines)

        wait_until("access_revoked at the broker",
                   lambda: storage()["state"] == "access_revoked", 15, lambda: agent.stderr)
        revoked = storage()
        assert "403" in str(revoked["state_reason"]), revoked
        # segments recorded meanwhile wait sealed in the spool, none arrives
        wait_until("2 spooled segments", lambda: len(spooled()) >= 2, 15, lambda: agent.stderr)
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - cut_at)))
        during_cut = uploaded_seqs(agent.lines)
        held = len(spooled())
        assert held >= 2, agent.stderr

        new_key = s3_gate.keys.add(label=BROKER_KEY_LABEL)  # the admin makes a new key...
        saved = Operator(broker).run(  # ...and installs it, without a restart
            admin.set_storage, tenant=tenant.tenant_id, bucket=tenant.bucket,
            region=s3_gate.region, endpoint_url=s3_gate.url, prefix=tenant.prefix,
            access_key_id=new_key.key_id, secret_access_key=new_key.secret,
            accept_risk=True,  # moto behind the gate enforces no IAM policy
        )
        assert saved["check"]["can_write"] is True
        assert storage()["state"] == "ok"
        code = agent.finish(timeout=DURATION + DRAIN + 20)
    assert code == 0, agent.stderr

    # -- the agent: every segment uploaded, in order, none twice, the spool empty ------------
    seqs = uploaded_seqs(agent.lines)
    assert seqs == list(range(SEGMENTS)), agent.stderr
    assert len(before_cut) >= 2
    # at most the one upload in flight at the deactivation could still finish during it
    # (its PUT and completion came just before the key was refused)
    assert len(during_cut) <= len(before_cut) + 1, agent.stderr
    assert len(seqs) - len(during_cut) >= held  # what was spooled arrived afterwards
    assert "keeping it in the encrypted spool" in agent.stderr
    assert "access revoked" in agent.stderr  # the broker's 503 to the re-grant or completion
    assert "went through the spool" in agent.stderr
    assert " NOT uploaded" not in agent.stderr
    assert " DROPPED" not in agent.stderr
    assert spooled() == []

    # -- the broker: every seq verified, the recording finished without a gap -----------------
    info = api.call("GET", f"/api/v1/recordings/{rid}",
                    token=boss.access_token).body
    listed = info["segments"]
    assert [s["seq"] for s in listed] == list(range(SEGMENTS)), info
    assert all(s["state"] == "verified" for s in listed), info
    assert info["state"] == "finished"
    assert info["gaps"] == []
    assert len({s["key"] for s in listed}) == SEGMENTS
    assert any(s["grants"] >= 2 for s in listed)  # the segment the revocation hit: re-granted

    # -- the bucket: exactly those objects, each hashing to what the broker recorded ----------
    client = s3_gate.client(setup_key)
    found = {
        item["Key"]
        for item in client.list_objects_v2(
            Bucket=tenant.bucket, Prefix=f"{tenant.prefix}/").get("Contents", [])
        if f"/{rid}/" in item["Key"] and is_segment(item["Key"])  # not the manifest beside
    }
    assert found == {s["key"] for s in listed}
    for segment in listed:
        data = client.get_object(Bucket=tenant.bucket, Key=segment["key"])["Body"].read()
        assert len(data) == segment["size"], segment
        assert base64.b64encode(hashlib.sha256(data).digest()).decode() == segment["sha256"]
        assert decoded_frames(data) >= 1

    # -- the gate: old key before, new key after, each segment stored exactly once ------------
    log = s3_gate.log.entries()
    by_path = {f"/{tenant.bucket}/{s['key']}": s["seq"] for s in listed}
    stored = [(i, e) for i, e in enumerate(log)
              if e.name == "PutObject" and e.path in by_path and e.status == 200]
    assert sorted(by_path[e.path] for _, e in stored) == list(range(SEGMENTS))  # none twice
    old_puts = [i for i, e in stored if e.key_id == old_key.key_id]
    new_puts = [i for i, e in stored if e.key_id == new_key.key_id]
    assert len(old_puts) + len(new_puts) == SEGMENTS
    assert old_puts
    assert new_puts
    assert max(old_puts) < min(new_puts)  # the old key before, the new key after
    old_seqs = sorted(by_path[log[i].path] for i in old_puts)
    assert old_seqs == list(range(len(old_seqs)))  # a prefix of the recording
    refused = [(i, e) for i, e in enumerate(log)
               if e.key_id == old_key.key_id and e.status == 403]
    assert refused, "the deactivated key was never refused"
    assert all(not e.signed_ok and e.error == "InvalidAccessKeyId" for _, e in refused)
    assert max(old_puts) < min(i for i, _ in refused) < min(new_puts)
    # the deactivation hit the recording itself (the agent's PUT, or the completion's HEAD)
    # and the broker's probe of its canary object (which marked the storage revoked)
    assert any(e.path in by_path for _, e in refused), refused
    assert any(e.name == "HeadObject" and "/_bucketreel/selfcheck/" in e.path
               for _, e in refused), refused
    assert not any(e.key_id == old_key.key_id and e.signed_ok
                   for e in log[min(i for i, _ in refused):])

    # -- the audit log: revoked once, then restored ------------------------------------------
    actions = [e.action for e in audit_entries(broker, tenant.tenant_id)]
    assert actions.count("storage.access_revoked") == 1
    assert actions.count("storage.access_restored") == 1
    assert actions.index("storage.access_revoked") < actions.index("storage.access_restored")
