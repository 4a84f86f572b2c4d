"""`iam-policy --vault` and `--retention-days` (issue 18 items 2 and 5): the customer's read
and list policy for `bucketreel-vault`, and retention the customer controls (a lifecycle rule
and Object Lock), each accepted by a real S3 API and doing what it says there."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ClientError

from broker.settings import Secret
from broker.storage.config import StorageConfig
from broker.storage.endpoint import EndpointPolicy
from broker.storage.s3 import BucketClient
from shared.bucket.policy import vault_policy
from tests.storage.iam import IamMoto
from tests.storage.test_iam_policy import ACTION_OPERATIONS, actions_of, iam_policy
from tests.support.s3 import S3Endpoint

MAPPING = ACTION_OPERATIONS


def printed(*extra: str) -> dict[str, Any]:
    return iam_policy("--bucket", "acme-recordings", "--prefix", "rec", *extra)


def test_without_the_flags_only_the_three_documents_are_printed() -> None:
    assert set(printed()) == {"identity_policy", "bucket_policy", "trust_policy"}


def test_the_vault_policy_reads_and_lists_under_the_prefix_and_writes_nothing() -> None:
    out = printed("--vault")
    assert set(out) == {"identity_policy", "bucket_policy", "trust_policy", "vault_policy",
                        "layout"}
    real = set(botocore.session.get_session().get_service_model("s3").operation_names)
    granted: set[str] = set()
    for statement in out["vault_policy"]["Statement"]:
        assert statement["Effect"] == "Allow"
        for action in actions_of(statement):
            assert MAPPING[action] <= real, action
            granted |= MAPPING[action]
    assert {"ListObjectsV2", "GetObject", "HeadObject"} <= granted
    assert out["vault_policy"] == vault_policy("acme-recordings", "rec")  # the vault's own
    assert not {op for op in granted if op.startswith(("Put", "Delete", "Copy", "Create"))}
    listing = out["vault_policy"]["Statement"][0]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["rec/*"]}}
    assert out["vault_policy"]["Statement"][1]["Resource"] == "arn:aws:s3:::acme-recordings/rec/*"
    # the layout says who writes what; every write is write-once
    layout = out["layout"]
    assert "rec/_bucketreel/devices/<device_id>.json" in layout
    assert all("If-None-Match: *" in who for who in layout.values())


def test_retention_prints_the_lifecycle_rules_and_object_lock() -> None:
    out = printed("--retention-days", "90", "--tenant", "t-1", "--tenant", "t-2")
    lock = out["object_lock_configuration"]
    assert lock == {"ObjectLockEnabled": "Enabled",
                    "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 90}}}
    prefixes = [r["Filter"]["Prefix"] for r in out["lifecycle_configuration"]["Rules"]]
    assert prefixes == ["rec/t-1/", "rec/_bucketreel/audit/t-1/", "rec/t-2/",
                        "rec/_bucketreel/audit/t-2/"]
    assert {r["Expiration"]["Days"] for r in out["lifecycle_configuration"]["Rules"]} == {90}
    placeholder = printed("--retention-days", "7", "--lock-mode", "GOVERNANCE")
    assert placeholder["lifecycle_configuration"]["Rules"][0]["Filter"]["Prefix"] == (
        "rec/TENANT_ID/")
    assert placeholder["object_lock_configuration"]["Rule"]["DefaultRetention"]["Mode"] == (
        "GOVERNANCE")


@pytest.mark.parametrize("bad", [["--retention-days", "0"], ["--retention-days", "36501"]])
def test_retention_out_of_range_is_refused(bad: list[str]) -> None:
    from tests.support.broker import BrokerCommandError

    with pytest.raises(BrokerCommandError, match="retention days must be 1 to 36500"):
        printed(*bad)


def test_a_real_s3_takes_the_retention_documents_and_holds_a_locked_object(
    s3_endpoint: S3Endpoint
) -> None:
    out = printed("--retention-days", "3", "--tenant", "t-1")
    client = s3_endpoint.client()
    bucket = f"bucketreel-lock-{secrets.token_hex(6)}"
    client.create_bucket(
        Bucket=bucket, ObjectLockEnabledForBucket=True,
        CreateBucketConfiguration={"LocationConstraint": s3_endpoint.region},
    )
    client.put_object_lock_configuration(
        Bucket=bucket, ObjectLockConfiguration=out["object_lock_configuration"]
    )
    client.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration=out["lifecycle_configuration"]
    )
    # the broker's own write-once PUT, as its outbox sends it, into the locked bucket
    config = StorageConfig(
        tenant_id="t-1", bucket=bucket, region=s3_endpoint.region,
        endpoint_url=s3_endpoint.url, prefix="rec", access_key_id=s3_endpoint.access_key_id,
        secret_access_key=Secret(s3_endpoint.secret_access_key), credential_version=1,
    )
    broker_bucket = BucketClient(config, policy=EndpointPolicy.from_setting(
        "127.0.0.1", dev_mode=False))
    assert broker_bucket.put_once("rec/t-1/u/r/manifest.json", b'{"kind": "manifest"}')
    assert not broker_bucket.put_once("rec/t-1/u/r/manifest.json", b"{}")  # written once
    put = client.head_object(Bucket=bucket, Key="rec/t-1/u/r/manifest.json")
    head = client.head_object(Bucket=bucket, Key="rec/t-1/u/r/manifest.json")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] > datetime.now(UTC) + timedelta(days=2)
    with pytest.raises(ClientError) as refused:  # not even the bucket's owner, within 3 days
        client.delete_object(Bucket=bucket, Key="rec/t-1/u/r/manifest.json",
                             VersionId=put["VersionId"])
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_the_vault_policy_on_an_iam_enforcing_s3(iam_s3: IamMoto) -> None:
    """Reads and lists; never writes nor deletes. (moto does not evaluate the `s3:prefix`
    condition, so listing outside the prefix is held to the printed policy above only.)"""
    bucket = f"bucketreel-vault-{secrets.token_hex(6)}"
    admin = iam_s3.client("s3")
    admin.create_bucket(Bucket=bucket,
                        CreateBucketConfiguration={"LocationConstraint": iam_s3.endpoint.region})
    admin.put_object(Bucket=bucket, Key="rec/t/u/r/000000.mp4", Body=b"segment")
    document = iam_policy("--bucket", bucket, "--prefix", "rec", "--vault")["vault_policy"]
    vault = iam_s3.client("s3", iam_s3.user(document))
    listed = vault.list_objects_v2(Bucket=bucket, Prefix="rec/")
    assert [o["Key"] for o in listed["Contents"]] == ["rec/t/u/r/000000.mp4"]
    assert vault.get_object(Bucket=bucket, Key="rec/t/u/r/000000.mp4")["Body"].read() == (
        b"segment")
    for attempt in (
        lambda: vault.put_object(Bucket=bucket, Key="rec/t/u/r/000001.mp4", Body=b"x"),
        lambda: vault.delete_object(Bucket=bucket, Key="rec/t/u/r/000000.mp4"),
    ):
        with pytest.raises(ClientError) as refused:
            attempt()
        assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert json.dumps(document)  # plain JSON, as printed
