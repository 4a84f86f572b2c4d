"""The bucket on its own, end to end: the real agent records the suite's Xvfb display through
a real broker (SQLite) into moto behind the strict S3 gate (SigV4 checked, each key limited:
moto's own IAM cannot check presigned uploads), the broker signing with a key of its own.
Then the broker is stopped AND its database deleted, and the customer, with a credential
that may only list and read the prefix, still lists, verifies and exports: the
exported MP4 plays (ffprobe) and lasts as long as its segments. Every tamper case below is
made with the customer's own rights, on a copy of the recording under a fresh prefix, and
`verify` names it; an audit entry removed from the broker's export is named by
`verify-audit`.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker import admin
from shared.bucket import keys, records
from shared.bucket.records import BrokerSigner, Manifest
from tests.conftest import sqlite_broker
from tests.identity.people import person
from tests.resilience.helpers import AGENT, agent_env
from tests.storage.conftest import s3_gate as s3_gate
from tests.storage.conftest import setup_key as setup_key
from tests.storage.factory import make_gate_tenant
from tests.support import agentlog
from tests.support.api import PASSWORD, Api, Operator, enrollment_code
from tests.support.display import XDisplay
from tests.support.s3gate import AccessKey, Grant, S3Gate
from tests.vault.conftest import Credential, VaultBucket, kinds
from tests.vault.test_vault_export import decodes_cleanly, ffprobe

FPS, SEGMENT_SECONDS, DURATION = 2, 2, 5
PREFIX = "rec"
WAIT = 60.0  # the broker's outbox polls every 5 s


@dataclass
class Recorded:
    bucket: VaultBucket  # the customer's view of the real prefix
    tenant_id: str
    user_id: str
    email: str
    recording_id: str
    segment_keys: list[str]
    durations: list[int]
    audit_export: Path
    database: Path


def wait_for(what: str, found: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not found():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not appear in the bucket within {timeout} s")
        time.sleep(0.5)


def exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError:
        return False
    return True


def listed(s3: Any, bucket: str, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def agent(home: Path, display: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AGENT, *args], env=agent_env(home, display), capture_output=True, text=True,
        timeout=180, check=False, stdin=subprocess.DEVNULL,
    )


READS = frozenset({"ListObjectsV2", "GetObject", "HeadObject"})


def gate_reader(gate: S3Gate) -> Callable[[str], Credential]:
    def make(prefix: str) -> Credential:
        key = gate.keys.add(label="customer-reader", may=Grant(operations=READS,
                                                                under=f"{prefix}/"))
        return Credential(key.key_id, key.secret)
    return make


@pytest.fixture(scope="module")
def recorded(
    s3_gate: S3Gate, setup_key: AccessKey, xvfb: XDisplay, session_tmp: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Recorded:
    owner = s3_gate.client(setup_key)  # the customer's own rights
    home = tmp_path_factory.mktemp("vault-agent")
    name = f"vault-e2e-{secrets.token_hex(4)}"
    email = f"ann-{secrets.token_hex(3)}@example.test"
    with ExitStack() as stack:
        broker = sqlite_broker(stack, session_tmp, name, "the vault's broker", {})
        operator = Operator(broker)
        tenant = make_gate_tenant(broker, s3_gate, setup_key, prefix=PREFIX)
        bucket, tenant_id = tenant.bucket, tenant.tenant_id
        user_id = operator.run(admin.create_user, tenant=tenant_id, email=email,
                               role="employee", password=PASSWORD)["user_id"]
        enrolled = agent(home, xvfb.display, "enroll", "--broker", broker.url,
                         "--code", enrollment_code(broker, tenant, user_id))
        assert enrolled.returncode == 0, enrolled.stderr
        done = agent(home, xvfb.display, "run", "--fps", str(FPS), "--segment-seconds",
                     str(SEGMENT_SECONDS), "--duration", str(DURATION))
        assert done.returncode == 0, done.stderr + broker.log_tail()
        recording_id = agentlog.events(done.stderr, "recording_started")[0]["recording_id"]
        manifest_key = keys.manifest_key(PREFIX, tenant_id, user_id, recording_id)
        wait_for("the manifest", lambda: exists(owner, bucket, manifest_key))
        # An admin looks at the first segment: the view URL is audited and anchored at once.
        boss = person(Api(broker.url), broker, tenant, "admin")
        operator.run(admin.view_url, tenant=tenant_id, recording=recording_id, seq=0)
        anchors = f"{PREFIX}/_bucketreel/audit/{tenant_id}/"
        wait_for("an audit anchor", lambda: bool(listed(owner, bucket, anchors)))
        reply = Api(broker.url).call("GET", "/api/v1/admin/audit/export",
                                     token=boss.access_token)
        assert reply.status == 200, reply.raw
        export = home / "audit.jsonl"
        export.write_bytes(reply.raw)
    # The broker is gone, and so is everything it knew.
    database = session_tmp / name
    shutil.rmtree(database)
    assert not database.exists()
    manifest: Manifest = records.decode(
        owner.get_object(Bucket=bucket, Key=manifest_key)["Body"].read(), Manifest
    )
    readers = gate_reader(s3_gate)
    return Recorded(
        bucket=VaultBucket(url=s3_gate.url, region=s3_gate.region, bucket=bucket,
                           prefix=PREFIX, owner=owner, reader=readers(PREFIX), readers=readers),
        tenant_id=tenant_id, user_id=user_id, email=email, recording_id=recording_id,
        segment_keys=[s.key for s in manifest.segments],
        durations=[s.duration_ms for s in manifest.segments], audit_export=export,
        database=database,
    )


def copy_prefix(recorded: Recorded) -> VaultBucket:
    """The whole prefix copied, with the customer's rights, under a fresh one (with its own
    read-only credential), for one tamper case."""
    source = recorded.bucket
    prefix = f"t{secrets.token_hex(4)}"
    for key in listed(source.owner, source.bucket, f"{PREFIX}/"):
        source.owner.copy_object(
            Bucket=source.bucket, Key=prefix + key[len(PREFIX):],
            CopySource={"Bucket": source.bucket, "Key": key},
        )
    return source.copy(prefix)


def moved(recorded: Recorded, copy: VaultBucket, key: str) -> str:
    return copy.prefix + key[len(PREFIX):]


def test_without_the_broker_list_verify_and_export_still_work(
    recorded: Recorded, s3_gate: S3Gate, tmp_path: Path
) -> None:
    vault = recorded.bucket
    assert len(recorded.segment_keys) >= 3
    [found] = vault.json("list", "--person", recorded.email)["recordings"]
    assert found["recording_id"] == recorded.recording_id
    assert found["closed"] is True
    assert found["segments"] == len(recorded.segment_keys)
    checked = vault.json("verify", "--all")
    assert checked["clean"], checked["problems"]
    assert checked["recordings"][0]["checked_segments"] == len(recorded.segment_keys)

    day = found["started_at"][:10]
    out = tmp_path / "ann.mp4"
    exported = vault.json("export", "--person", recorded.email, "--from", f"{day}T00:00",
                          "--to", f"{day}T23:59:59", "-o", str(out))
    assert exported["clean"], exported
    assert exported["segments"] == len(recorded.segment_keys)
    probe = ffprobe(out)
    assert [s["codec_name"] for s in probe["streams"]] == ["h264"]
    duration_ms = float(probe["format"]["duration"]) * 1000
    assert abs(duration_ms - sum(recorded.durations)) <= 1000 / FPS, (duration_ms, recorded)
    decodes_cleanly(out)
    again = vault.vault("verify", "--report", str(tmp_path / "ann.custody.json"))
    assert again.returncode == 0, again.stdout + again.stderr

    audit = vault.json("verify-audit", str(recorded.audit_export))
    [tenant] = audit["tenants"]
    assert tenant["anchors"] >= 1
    assert tenant["problems"] == []
    # All of it was done with list and read alone, and every request was answered.
    reads = s3_gate.log.entries(vault.reader.access_key_id)
    assert {e.name for e in reads} == READS
    assert {e.status for e in reads} == {200}


def test_an_audit_entry_removed_from_the_export_is_named(
    recorded: Recorded, tmp_path: Path
) -> None:
    lines = recorded.audit_export.read_text().splitlines()
    assert len(lines) >= 3
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join(lines[:1] + lines[2:]) + "\n")
    doc = recorded.bucket.json("verify-audit", str(cut), expect=1)
    problems = doc["tenants"][0]["problems"]
    assert kinds({"problems": problems}) == {"missing"}, problems
    seq = json.loads(lines[1])["seq"]
    assert problems[0]["subject"] == f"audit entries {seq} of {recorded.tenant_id}"


def tamper_deleted(recorded: Recorded, copy: VaultBucket) -> set[str]:
    key = moved(recorded, copy, recorded.segment_keys[1])
    copy.owner.delete_object(Bucket=copy.bucket, Key=key)
    return {"missing"}


def tamper_bytes(recorded: Recorded, copy: VaultBucket) -> set[str]:
    key = moved(recorded, copy, recorded.segment_keys[1])
    other = copy.owner.get_object(Bucket=copy.bucket, Key=moved(
        recorded, copy, recorded.segment_keys[0]))["Body"].read()
    copy.replace_bytes(key, other[::-1])
    return {"altered"}


def tamper_swapped(recorded: Recorded, copy: VaultBucket) -> set[str]:
    one, two = (moved(recorded, copy, k) for k in recorded.segment_keys[:2])
    spare = f"{copy.prefix}/spare"
    for source, target in ((one, spare), (two, one), (spare, two)):
        copy.owner.copy_object(Bucket=copy.bucket, Key=target,
                               CopySource={"Bucket": copy.bucket, "Key": source})
    copy.owner.delete_object(Bucket=copy.bucket, Key=spare)
    return {"reordered"}


def tamper_metadata(recorded: Recorded, copy: VaultBucket) -> set[str]:
    key = moved(recorded, copy, recorded.segment_keys[1])
    meta = copy.owner.head_object(Bucket=copy.bucket, Key=key)["Metadata"]
    meta["started-at-ms"] = str(int(meta["started-at-ms"]) - 60_000)  # "a minute earlier"
    copy.owner.copy_object(Bucket=copy.bucket, Key=key, Metadata=meta,
                           MetadataDirective="REPLACE",
                           CopySource={"Bucket": copy.bucket, "Key": key})
    return {"re-timed"}


def tamper_manifest(recorded: Recorded, copy: VaultBucket) -> set[str]:
    key = keys.manifest_key(copy.prefix, recorded.tenant_id, recorded.user_id,
                            recorded.recording_id)
    manifest: Manifest = records.decode(
        copy.owner.get_object(Bucket=copy.bucket, Key=key)["Body"].read(), Manifest
    )
    forged = BrokerSigner(Ed25519PrivateKey.generate()).sign(manifest)  # same content
    copy.owner.put_object(Bucket=copy.bucket, Key=key, Body=records.encode(forged))
    return {"forged"}


def tamper_device_key(recorded: Recorded, copy: VaultBucket) -> set[str]:
    [device] = listed(copy.owner, copy.bucket, f"{copy.prefix}/_bucketreel/devices/")
    copy.swap_device_key(device)
    return {"forged"}


@pytest.mark.parametrize("tamper", [
    tamper_deleted, tamper_bytes, tamper_swapped, tamper_metadata, tamper_manifest,
    tamper_device_key,
], ids=lambda f: f.__name__.removeprefix("tamper_"))
def test_each_tamper_case_is_named(
    recorded: Recorded, tamper: Callable[[Recorded, VaultBucket], set[str]]
) -> None:
    copy = copy_prefix(recorded)
    clean = copy.json("verify", recorded.recording_id)
    assert clean["clean"], clean["problems"]  # the copy itself is intact
    expected = tamper(recorded, copy)
    doc = copy.json("verify", recorded.recording_id, expect=1)
    assert kinds(doc) == expected, doc["problems"]
