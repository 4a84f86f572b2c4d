"""The vault's command line: `list`, its policy, exit codes and messages for a person."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from shared.bucket.policy import vault_policy
from shared.keys import segment_key
from tests.storage.iam import IamMoto, Principal
from tests.vault.conftest import VAULT, Credential, VaultBucket

MONDAY = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_list_by_person_and_day_names_people_by_their_email(vault_bucket: VaultBucket) -> None:
    writer = vault_bucket.writer()
    ann, bob = writer.enroll("ann@example.test"), writer.enroll("bob@example.test")
    first = writer.record(ann, segments=2, start=MONDAY)
    open_one = writer.record(ann, segments=2, start=MONDAY + timedelta(days=1), manifest=False)
    writer.record(bob, segments=1, start=MONDAY)

    everything = vault_bucket.json("list")["recordings"]
    assert len(everything) == 3
    anns = vault_bucket.json("list", "--person", "ann@example.test")["recordings"]
    assert [r["recording_id"] for r in anns] == [first.recording_id, open_one.recording_id]
    assert [r["closed"] for r in anns] == [True, False]
    assert anns[0]["email"] == "ann@example.test"
    assert anns[0]["started_at"] == "2026-03-02T09:00:00.000+00:00"
    tuesday = vault_bucket.json("list", "--day", "2026-03-03")["recordings"]
    assert [r["recording_id"] for r in tuesday] == [open_one.recording_id]
    # Days are cut in --zone: 09:00 UTC on Monday is still Monday in Tokyo (18:00).
    tokyo = vault_bucket.json("--zone", "Asia/Tokyo", "list", "--day", "2026-03-02",
                              "--person", ann[0])["recordings"]
    assert [r["recording_id"] for r in tokyo] == [first.recording_id]

    text = vault_bucket.vault("list", "--person", "ann@example.test")
    assert text.returncode == 0, text.stderr
    assert "ann@example.test" in text.stdout
    assert "(open: no manifest)" in text.stdout
    assert text.stderr == ""  # no progress line when stderr is not a terminal


def test_the_printed_policy_lets_the_vault_read_and_nothing_more(
    vault_bucket: VaultBucket, iam_s3: IamMoto
) -> None:
    done = vault_bucket.vault("policy")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == vault_policy(vault_bucket.bucket, vault_bucket.prefix)
    reader = iam_s3.client("s3", Principal("reader", "", vault_bucket.reader.access_key_id,
                                           vault_bucket.reader.secret_access_key))
    key = f"{vault_bucket.prefix}/x"
    with pytest.raises(ClientError) as denied:
        reader.put_object(Bucket=vault_bucket.bucket, Key=key, Body=b"x")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    vault_bucket.owner.put_object(Bucket=vault_bucket.bucket, Key=key, Body=b"x")
    with pytest.raises(ClientError) as denied:
        reader.delete_object(Bucket=vault_bucket.bucket, Key=key)
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    # Listing is limited to the prefix by a condition moto's IAM does not evaluate (AWS does):
    # the document says so.
    listing = json.loads(done.stdout)["Statement"][0]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": [f"{vault_bucket.prefix}/*"]}}


def test_a_credential_without_rights_is_exit_2_with_what_is_needed(
    vault_bucket: VaultBucket, iam_s3: IamMoto
) -> None:
    made = iam_s3.user({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::elsewhere/*"}
    ]})
    nobody = Credential(made.access_key_id, made.secret_access_key)
    done = vault_bucket.vault("verify", "--all", who=nobody)
    assert done.returncode == 2
    assert "refused these credentials (AccessDenied)" in done.stderr
    assert "s3:ListBucket" in done.stderr
    assert "Traceback" not in done.stderr


def test_no_credentials_and_no_bucket_are_exit_2(vault_bucket: VaultBucket) -> None:
    env = {k: v for k, v in vault_bucket.env().items() if not k.startswith("AWS_ACCESS")}
    env.pop("AWS_SECRET_ACCESS_KEY")
    done = subprocess.run(
        [VAULT, "--bucket", vault_bucket.bucket, "--endpoint-url", vault_bucket.url,
         "--region", vault_bucket.region, "list"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 2
    assert "no AWS credentials found" in done.stderr
    missing = vault_bucket.vault("list", prefix="").args
    missing[missing.index("--bucket") + 1] = "no-such-bucket-here"
    done = subprocess.run(missing, env=vault_bucket.env(), capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("bucketreel-vault: error:")


@pytest.mark.parametrize("args", [
    [], ["verify"], ["verify", "rec-1", "--all"], ["--bucket", "b", "list", "--day", "monday"],
    ["--bucket", "b", "--zone", "Mars/Olympus", "list"],
    ["--bucket", "b", "export", "--person", "p", "--from", "2026-03-02", "--to", "2026-03-01",
     "-o", "x.mp4"],
])
def test_usage_errors_are_exit_2(args: list[str], tmp_path: object) -> None:
    done = subprocess.run([VAULT, *args], capture_output=True, text=True, timeout=60,
                          check=False, env={"PATH": os.environ["PATH"]}, cwd=str(tmp_path))
    assert done.returncode == 2, done
    assert "error" in done.stderr


def test_help_names_the_commands_and_exit_codes() -> None:
    done = subprocess.run([VAULT, "--help"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0
    for word in ("list", "verify", "verify-audit", "export", "exit codes", "s3:GetObject"):
        assert word in done.stdout


def test_an_unreachable_endpoint_is_exit_2_after_bounded_retries(vault_bucket: VaultBucket) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    args = vault_bucket.vault("list").args
    args[args.index("--endpoint-url") + 1] = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    done = subprocess.run(args, env=vault_bucket.env(), capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 2
    assert "cannot reach the bucket" in done.stderr
    assert time.monotonic() - started < 60


def test_a_listing_longer_than_one_page_is_read_to_its_end(vault_bucket: VaultBucket) -> None:
    """ListObjectsV2 returns at most 1,000 keys a page: a recording of 1,200 segments (20
    hours of one-minute segments) is listed whole, with the manifest past the first page."""
    writer = vault_bucket.writer()
    ann = writer.enroll("ann@example.test")
    written = writer.record(ann, segments=1, start=MONDAY, manifest=False)
    source = {"Bucket": vault_bucket.bucket, "Key": written.keys[0]}
    for seq in range(1, 1200):  # the same bytes under later keys: what a listing sees
        vault_bucket.owner.copy_object(
            Bucket=vault_bucket.bucket, CopySource=source,
            Key=segment_key(vault_bucket.prefix, written.tenant_id, written.user_id,
                            written.recording_id, seq),
        )
    writer.manifest(written, [], [])
    [found] = vault_bucket.json("list")["recordings"]
    assert found["recording_id"] == written.recording_id
    assert found["segments"] == 1200
    assert found["closed"] is True, "the manifest sorts after the segments: on the 2nd page"
