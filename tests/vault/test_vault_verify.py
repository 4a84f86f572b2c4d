"""`verify` on recordings written in the bucket format (tests/vault/bucketwriter.py): a clean
recording passes, and each way of tampering with it that the customer's own rights allow is
named. The vault runs as its console script, with a credential that may only list and read."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.bucket import keys, records
from shared.bucket.records import BrokerSigner
from tests.vault.bucketwriter import BucketWriter, Written, encode
from tests.vault.conftest import VAULT, VaultBucket, kinds


def test_a_clean_recording_verifies(vault_bucket: VaultBucket) -> None:
    writer = vault_bucket.writer()
    written = writer.record(writer.enroll(), segments=3)
    doc = vault_bucket.json("verify", written.recording_id)
    assert doc["clean"] is True, doc
    assert doc["problems"] == []
    [recording] = doc["recordings"]
    assert recording["checked_segments"] == 3
    assert doc["broker_keys"] == [writer.signer.key_id]
    path = f"{written.tenant_id}/{written.user_id}/{written.recording_id}"
    assert vault_bucket.json("verify", path)["recordings"] == doc["recordings"]


def owner_meta(vault_bucket: VaultBucket, key: str) -> dict[str, str]:
    head = vault_bucket.owner.head_object(Bucket=vault_bucket.bucket, Key=key)
    return dict(head["Metadata"])


def problems_of(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p["kind"], p["subject"]) for p in doc["problems"]]


@pytest.fixture
def recorded(vault_bucket: VaultBucket) -> tuple[BucketWriter, Written]:
    writer = vault_bucket.writer()
    return writer, writer.record(writer.enroll(), segments=4)


def test_a_deleted_segment_is_missing(vault_bucket: VaultBucket, recorded: Any) -> None:
    _, written = recorded
    vault_bucket.owner.delete_object(Bucket=vault_bucket.bucket, Key=written.keys[1])
    doc = vault_bucket.json("verify", written.recording_id, expect=1)
    assert problems_of(doc) == [("missing", written.keys[1])]


def test_replaced_bytes_are_altered(vault_bucket: VaultBucket, recorded: Any) -> None:
    _, written = recorded
    key = written.keys[2]
    other = encode(1, written.started_at)[0].data  # a real segment, of other pictures
    vault_bucket.replace_bytes(key, other)
    doc = vault_bucket.json("verify", written.recording_id, expect=1)
    assert problems_of(doc) == [("altered", key)]
    assert "are not the ones signed" in doc["problems"][0]["message"]


def test_two_swapped_segments_are_reordered(vault_bucket: VaultBucket, recorded: Any) -> None:
    _, written = recorded
    s3, bucket = vault_bucket.owner, vault_bucket.bucket
    one, two, spare = written.keys[1], written.keys[2], f"{vault_bucket.prefix}-spare.mp4"
    for source, target in ((one, spare), (two, one), (spare, two)):
        s3.copy_object(Bucket=bucket, Key=target, CopySource={"Bucket": bucket, "Key": source})
    doc = vault_bucket.json("verify", written.recording_id, expect=1)
    assert kinds(doc) == {"reordered"}, doc["problems"]
    assert {subject for _, subject in problems_of(doc)} == {one, two}


def test_swapped_bytes_under_kept_metadata_are_reordered(
    vault_bucket: VaultBucket, recorded: Any
) -> None:
    _, written = recorded
    s3, bucket = vault_bucket.owner, vault_bucket.bucket
    one, two = written.keys[1], written.keys[2]
    body = {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in (one, two)}
    for key, other in ((one, two), (two, one)):
        vault_bucket.replace_bytes(key, body[other])
    doc = vault_bucket.json("verify", written.recording_id, expect=1)
    assert sorted(problems_of(doc)) == [("reordered", one), ("reordered", two)]


@pytest.mark.parametrize(("field", "change", "kind"), [
    ("started-at-ms", lambda v: str(int(v) + 5000), "re-timed"),
    ("duration-ms", lambda v: str(int(v) * 2), "re-timed"),
    ("sha256", lambda v: v[::-1], "altered"),
    ("signature", lambda v: "unsigned", "altered"),
])
def test_edited_metadata_is_named(
    vault_bucket: VaultBucket, recorded: Any, field: str, change: Any, kind: str
) -> None:
    _, written = recorded
    key = written.keys[1]
    meta = owner_meta(vault_bucket, key)
    meta[field] = change(meta[field])
    vault_bucket.owner.copy_object(
        Bucket=vault_bucket.bucket, Key=key, CopySource={"Bucket": vault_bucket.bucket, "Key": key},
        Metadata=meta, MetadataDirective="REPLACE",
    )
    doc = vault_bucket.json("verify", written.recording_id, expect=1)
    assert kind in kinds(doc), doc["problems"]
    assert {subject for _, subject in problems_of(doc)} == {key}


def test_stripped_metadata_is_unsigned(vault_bucket: VaultBucket, recorded: Any) -> None:
    _, written = recorded
    key = written.keys[0]
    vault_bucket.owner.copy_object(
        Bucket=vault_bucket.bucket, Key=key, CopySource={"Bucket": vault_bucket.bucket, "Key": key},
        Metadata={}, MetadataDirective="REPLACE",
    )
    doc = vault_bucket.json("verify", written.recording_id, expect=1)
    assert problems_of(doc) == [("unsigned", key)]


def test_a_manifest_forged_with_another_key(vault_bucket: VaultBucket) -> None:
    writer = vault_bucket.writer()
    written = writer.record(writer.enroll(), segments=3, manifest=False)
    rogue = BrokerSigner(Ed25519PrivateKey.generate())
    key = writer.manifest(written, [], [], signer=rogue)  # "no segment was ever recorded"
    doc = vault_bucket.json("verify", written.recording_id, expect=1)
    assert ("forged", key) in problems_of(doc)
    assert f"signed with key {rogue.key_id}, which is not published" in json.dumps(doc)


def test_a_rogue_key_published_beside_the_brokers_is_not_trusted_when_pinned(
    vault_bucket: VaultBucket,
) -> None:
    writer = vault_bucket.writer()
    written = writer.record(writer.enroll(), segments=2, manifest=False)
    assert "warning" not in vault_bucket.vault("list").stderr, "one key: nothing to warn of"
    rogue = BrokerSigner(Ed25519PrivateKey.generate())
    vault_bucket.owner.put_object(
        Bucket=vault_bucket.bucket, Key=keys.broker_key_key(vault_bucket.prefix, rogue.key_id),
        Body=records.encode(rogue.record(created_at_ms=0)),
    )
    key = writer.manifest(written, [], [], signer=rogue)
    assert vault_bucket.json("verify", written.recording_id, expect=1)["problems"][0]["kind"] \
        == "forged"  # the rogue manifest lists no segment: every segment is "not in it"
    unpinned = vault_bucket.vault("list")
    assert "warning: 2 broker keys are published" in unpinned.stderr, unpinned.stderr
    assert rogue.key_id in unpinned.stderr
    assert "--trust-key" in unpinned.stderr
    pinned = vault_bucket.json(
        "--trust-key", writer.signer.key_id, "verify", written.recording_id, expect=1
    )
    assert problems_of(pinned) == [("forged", key)]
    assert "not among the keys trusted with --trust-key" in pinned["problems"][0]["message"]
    assert "warning" not in vault_bucket.vault(
        "--trust-key", writer.signer.key_id, "list").stderr, "pinned: nothing to warn of"


def test_a_swapped_device_key_is_forged(vault_bucket: VaultBucket, recorded: Any) -> None:
    _, written = recorded
    key = keys.device_key(vault_bucket.prefix, written.device_id)
    vault_bucket.swap_device_key(key)
    doc = vault_bucket.json("verify", written.recording_id, expect=1)
    assert problems_of(doc) == [("forged", key)]


def test_a_deleted_device_record_is_missing(vault_bucket: VaultBucket, recorded: Any) -> None:
    _, written = recorded
    key = keys.device_key(vault_bucket.prefix, written.device_id)
    vault_bucket.owner.delete_object(Bucket=vault_bucket.bucket, Key=key)
    doc = vault_bucket.json("verify", written.recording_id, expect=1)
    assert problems_of(doc) == [("missing", key)]


def test_a_gap_the_device_signed_accounts_for_its_segments(vault_bucket: VaultBucket) -> None:
    writer = vault_bucket.writer()
    written = writer.record(writer.enroll(), segments=4, drop=(1,))
    doc = vault_bucket.json("verify", written.recording_id)
    assert doc["clean"], doc["problems"]
    assert "as the device reported: 1" in " ".join(doc["recordings"][0]["notes"])


def test_an_unsigned_gap_accounts_for_nothing(vault_bucket: VaultBucket) -> None:
    writer = vault_bucket.writer()
    written = writer.record(writer.enroll(), segments=4, drop=(2,), gap_signed=False)
    doc = vault_bucket.json("verify", written.recording_id, expect=1)
    assert kinds(doc) == {"unsigned", "missing"}, doc["problems"]


def test_without_a_manifest_a_deleted_middle_segment_is_still_missing(
    vault_bucket: VaultBucket,
) -> None:
    writer = vault_bucket.writer()
    written = writer.record(writer.enroll(), segments=4, manifest=False)
    vault_bucket.owner.delete_object(Bucket=vault_bucket.bucket, Key=written.keys[2])
    doc = vault_bucket.json("verify", written.recording_id, expect=1)
    assert kinds(doc) == {"missing"}
    assert "never closed by the broker" in " ".join(doc["recordings"][0]["notes"])


def test_verify_all_and_by_person_and_day(vault_bucket: VaultBucket) -> None:
    writer = vault_bucket.writer()
    ann = writer.enroll("ann@example.test")
    bob = writer.enroll("bob@example.test")
    monday = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    first = writer.record(ann, segments=2, start=monday)
    writer.record(ann, segments=2, start=monday + timedelta(days=1))
    writer.record(bob, segments=2, start=monday)
    everything = vault_bucket.json("verify", "--all")
    assert len(everything["recordings"]) == 3
    assert everything["clean"]
    days = vault_bucket.json("verify", "--person", "ANN@example.test", "--day", "2026-03-02")
    assert [r["recording_id"] for r in days["recordings"]] == [first.recording_id]
    vault_bucket.owner.delete_object(Bucket=vault_bucket.bucket, Key=first.keys[0])
    assert kinds(vault_bucket.json("verify", "--all", expect=1)) == {"missing"}


def test_an_older_agents_unsigned_recording_is_held_against_its_manifest(
    vault_bucket: VaultBucket,
) -> None:
    writer = vault_bucket.writer()
    written = writer.record(writer.enroll(keyless=True), segments=3)
    assert vault_bucket.json("verify", written.recording_id)["clean"]
    key = written.keys[1]
    meta = owner_meta(vault_bucket, key)
    meta["started-at-ms"] = str(int(meta["started-at-ms"]) + 700)
    vault_bucket.owner.copy_object(
        Bucket=vault_bucket.bucket, Key=key, CopySource={"Bucket": vault_bucket.bucket, "Key": key},
        Metadata=meta, MetadataDirective="REPLACE",
    )
    doc = vault_bucket.json("verify", written.recording_id, expect=1)
    assert problems_of(doc) == [("re-timed", key)]


def test_progress_is_drawn_on_a_terminal_only(vault_bucket: VaultBucket) -> None:
    writer = vault_bucket.writer()
    written = writer.record(writer.enroll(), segments=3)
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [VAULT, "--bucket", vault_bucket.bucket, "--prefix", vault_bucket.prefix,
             "--endpoint-url", vault_bucket.url, "--region", vault_bucket.region, "verify",
             written.recording_id],
            env=vault_bucket.env(), stdout=subprocess.PIPE, stderr=follower, timeout=120,
            check=False, text=True,
        )
        os.close(follower)
        drawn = b""
        while select.select([leader], [], [], 0.5)[0]:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(leader)
    assert done.returncode == 0, done.stdout
    assert b"\rverify: 1/3" in drawn
    assert "verify:" not in done.stdout  # the result, on stdout, carries no progress


def test_a_pause_between_segments_is_told_with_the_devices_reason(
    vault_bucket: VaultBucket,
) -> None:
    writer = vault_bucket.writer()
    paused = writer.record(writer.enroll(), segments=3, pause=(0, 30.0))
    doc = vault_bucket.json("verify", paused.recording_id)
    assert doc["clean"], doc["problems"]
    assert "30.0 s between segments 0 and 1: a pause the device reported (idle)" in (
        doc["recordings"][0]["notes"]
    )
    unexplained = writer.record(writer.enroll(), segments=3, pause=(1, 20.0), manifest=False)
    notes = vault_bucket.json("verify", unexplained.recording_id)["recordings"][0]["notes"]
    assert "20.0 s between segments 1 and 2: no pause reported" in notes
