"""`verify-audit`: the audit export's public hash chain, held against the anchors the broker
wrote to the bucket. An entry removed, edited, or cut off the end is named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.vault.bucketwriter import BucketWriter
from tests.vault.conftest import VaultBucket, kinds


@pytest.fixture
def logged(vault_bucket: VaultBucket) -> BucketWriter:
    writer = vault_bucket.writer()
    for n in range(1, 7):
        writer.audit_entry("view_url_minted", f"recording-{n}", {"viewer": "boss", "n": n})
        if n in (3, 6):
            writer.anchor()
    return writer


def check(vault_bucket: VaultBucket, tmp_path: Path, lines: list[dict[str, Any]],
          expect: int) -> dict[str, Any]:
    export = tmp_path / "audit.jsonl"
    export.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return vault_bucket.json("verify-audit", str(export), expect=expect)


def test_an_intact_export_matches_its_anchors(
    vault_bucket: VaultBucket, logged: BucketWriter, tmp_path: Path
) -> None:
    doc = check(vault_bucket, tmp_path, logged.audit, 0)
    [tenant] = doc["tenants"]
    assert tenant == {
        "tenant_id": logged.tenant_id, "entries": 6, "anchors": 2, "newest_anchor": 6,
        "problems": [], "notes": [],
    }


def test_an_entry_removed_from_the_export_is_missing(
    vault_bucket: VaultBucket, logged: BucketWriter, tmp_path: Path
) -> None:
    doc = check(vault_bucket, tmp_path, [e for e in logged.audit if e["seq"] != 2], 1)
    assert kinds(doc["tenants"][0]) == {"missing"}
    assert doc["tenants"][0]["problems"][0]["subject"] == f"audit entries 2 of {logged.tenant_id}"


def test_an_anchored_entry_removed_is_missing_and_an_edit_is_altered(
    vault_bucket: VaultBucket, logged: BucketWriter, tmp_path: Path
) -> None:
    edited = [dict(e) for e in logged.audit if e["seq"] != 3]
    edited[0]["target"] = "someone-else"
    doc = check(vault_bucket, tmp_path, edited, 1)
    found = {(p["kind"], p["subject"]) for p in doc["tenants"][0]["problems"]}
    assert ("altered", f"audit entry 1 of {logged.tenant_id}") in found
    assert ("missing", f"audit entry 3 of {logged.tenant_id}") in found


def test_a_rewritten_tail_with_a_consistent_chain_still_differs_from_the_anchor(
    vault_bucket: VaultBucket, logged: BucketWriter, tmp_path: Path
) -> None:
    """Whoever rewrites entries and recomputes every hash after them keeps the export's own
    chain intact; the anchor in the bucket is what shows it."""
    from shared.auditchain import export_hash

    rewritten = [dict(e) for e in logged.audit]
    rewritten[4]["details"] = {"viewer": "nobody"}
    for index in range(4, 6):
        rewritten[index]["prev_hash"] = rewritten[index - 1]["hash"]
        rewritten[index]["hash"] = export_hash(rewritten[index])
    doc = check(vault_bucket, tmp_path, rewritten, 1)
    assert [(p["kind"], p["subject"]) for p in doc["tenants"][0]["problems"]] == [
        ("altered", f"audit entry 6 of {logged.tenant_id}")
    ]


def test_an_export_cut_before_the_newest_anchor_is_truncated(
    vault_bucket: VaultBucket, logged: BucketWriter, tmp_path: Path
) -> None:
    doc = check(vault_bucket, tmp_path, logged.audit[:4], 1)
    assert kinds(doc["tenants"][0]) == {"truncated"}


def test_a_forged_anchor_is_named(
    vault_bucket: VaultBucket, logged: BucketWriter, tmp_path: Path
) -> None:
    from shared.bucket import keys

    key = keys.anchor_key(vault_bucket.prefix, logged.tenant_id, 6)
    s3, bucket = vault_bucket.owner, vault_bucket.bucket
    anchor = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    anchor["seq"] = 9
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(anchor).encode())
    doc = check(vault_bucket, tmp_path, logged.audit, 1)
    assert [(p["kind"], p["subject"]) for p in doc["tenants"][0]["problems"]] == [("forged", key)]


def test_not_an_export_is_a_usage_error(vault_bucket: VaultBucket, tmp_path: Path) -> None:
    export = tmp_path / "audit.jsonl"
    export.write_text('{"seq": 1}\n')
    done = vault_bucket.vault("verify-audit", str(export))
    assert done.returncode == 2
    assert "lacks the export's fields" in done.stderr
