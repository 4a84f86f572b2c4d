"""`bucketreel-broker iam-policy` (issue 4 item 2): valid JSON, least privilege, real names.

IAM action names are not S3 operation names, so the mapping below is written out by hand
from the S3 "actions, resources and condition keys" reference, and every operation it names
is checked against botocore's S3 service model.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import botocore.session
import pytest

from tests.support.broker import BrokerCommandError, base_env, run_cli
from tests.support.s3 import S3Endpoint

PRINCIPAL = "arn:aws:iam::123456789012:user/bucketreel-broker"
ASSUMER = "arn:aws:iam::210987654321:root"

# IAM action → the S3 API operations it authorises.
ACTION_OPERATIONS: dict[str, set[str]] = {
    "s3:PutObject": {"PutObject", "CopyObject", "CreateMultipartUpload", "UploadPart",
                     "CompleteMultipartUpload"},
    "s3:GetObject": {"GetObject", "HeadObject"},
    "s3:DeleteObject": {"DeleteObject", "DeleteObjects"},
    "s3:DeleteObjectVersion": {"DeleteObject", "DeleteObjects"},  # with VersionId
    "s3:DeleteObjectTagging": {"DeleteObjectTagging"},
    "s3:DeleteObjectVersionTagging": {"DeleteObjectTagging"},  # with VersionId
    "s3:AbortMultipartUpload": {"AbortMultipartUpload"},
    "s3:BypassGovernanceRetention": {"DeleteObject", "DeleteObjects", "PutObjectRetention"},
    "s3:ListMultipartUploadParts": {"ListParts"},
    "s3:PutObjectAcl": {"PutObjectAcl"},
    "s3:PutObjectVersionAcl": {"PutObjectAcl"},  # with VersionId
    "s3:GetObjectAcl": {"GetObjectAcl"},
    "s3:GetObjectVersionAcl": {"GetObjectAcl"},  # with VersionId
    "s3:PutObjectRetention": {"PutObjectRetention"},
    "s3:GetObjectRetention": {"GetObjectRetention"},
    "s3:PutObjectLegalHold": {"PutObjectLegalHold"},
    "s3:GetObjectLegalHold": {"GetObjectLegalHold"},
    "s3:DeleteBucket": {"DeleteBucket"},
    "s3:DeleteBucketPolicy": {"DeleteBucketPolicy"},
    "s3:DeleteBucketWebsite": {"DeleteBucketWebsite"},
    "s3:DeleteBucketOwnershipControls": {"DeleteBucketOwnershipControls"},
    "s3:ListBucket": {"ListObjects", "ListObjectsV2", "HeadBucket"},
    "s3:ListBucketVersions": {"ListObjectVersions"},
    "s3:ListBucketMultipartUploads": {"ListMultipartUploads"},
    "s3:PutBucketAcl": {"PutBucketAcl"},
    "s3:GetBucketAcl": {"GetBucketAcl"},
    "s3:PutBucketObjectLockConfiguration": {"PutObjectLockConfiguration"},
    "s3:PutBucketPolicy": {"PutBucketPolicy"},
    "s3:PutBucketVersioning": {"PutBucketVersioning"},
    "s3:PutLifecycleConfiguration": {"PutBucketLifecycleConfiguration", "PutBucketLifecycle",
                                     "DeleteBucketLifecycle"},
    "s3:PutBucketCORS": {"PutBucketCors", "DeleteBucketCors"},
    "s3:PutBucketWebsite": {"PutBucketWebsite"},
    "s3:PutBucketLogging": {"PutBucketLogging"},
    "s3:PutBucketNotification": {"PutBucketNotificationConfiguration",
                                 "PutBucketNotification"},
    "s3:PutBucketTagging": {"PutBucketTagging", "DeleteBucketTagging"},
    "s3:PutEncryptionConfiguration": {"PutBucketEncryption", "DeleteBucketEncryption"},
    "s3:PutReplicationConfiguration": {"PutBucketReplication", "DeleteBucketReplication"},
    "s3:PutBucketPublicAccessBlock": {"PutPublicAccessBlock", "DeletePublicAccessBlock"},
    "s3:PutBucketOwnershipControls": {"PutBucketOwnershipControls"},
    "s3:PutBucketRequestPayment": {"PutBucketRequestPayment"},
    "s3:PutAccelerateConfiguration": {"PutBucketAccelerateConfiguration"},
    "s3:PutAnalyticsConfiguration": {"PutBucketAnalyticsConfiguration",
                                     "DeleteBucketAnalyticsConfiguration"},
    "s3:PutInventoryConfiguration": {"PutBucketInventoryConfiguration",
                                     "DeleteBucketInventoryConfiguration"},
    "s3:PutMetricsConfiguration": {"PutBucketMetricsConfiguration",
                                   "DeleteBucketMetricsConfiguration"},
    "s3:PutIntelligentTieringConfiguration": {"PutBucketIntelligentTieringConfiguration",
                                              "DeleteBucketIntelligentTieringConfiguration"},
}
# Operations the completeness checks leave out, and why: S3 Metadata tables, object
# annotations and ABAC are recent features whose IAM action names the generator does not
# claim to know; none of them removes, lists or overwrites recording objects.
NOT_COVERED = {
    "DeleteBucketMetadataConfiguration", "DeleteBucketMetadataTableConfiguration",
    "DeleteObjectAnnotation", "PutBucketAbac",
}
OBJECT_LISTING = {"ListObjects", "ListObjectsV2", "ListObjectVersions", "ListMultipartUploads",
                  "ListParts"}


def s3_operations() -> set[str]:
    return set(botocore.session.get_session().get_service_model("s3").operation_names)


def iam_policy(*args: str) -> dict[str, Any]:
    out = run_cli(["iam-policy", *args], base_env())
    value: dict[str, Any] = json.loads(out)
    return value


@pytest.fixture(scope="module")
def printed() -> dict[str, Any]:
    return iam_policy("--bucket", "acme-recordings", "--prefix", "bucketreel/",
                      "--principal-arn", PRINCIPAL, "--assumer-arn", ASSUMER,
                      "--external-id", "bre-ext-0123456789abcdef")


def actions_of(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def denied_operations(policy: dict[str, Any]) -> set[str]:
    """Operations denied without a condition, through the mapping."""
    return {
        op
        for statement in policy["Statement"] if "Condition" not in statement
        for action in actions_of(statement) for op in ACTION_OPERATIONS[action]
    }


def test_the_mapping_names_only_real_s3_operations() -> None:
    missing = {op for ops in ACTION_OPERATIONS.values() for op in ops} - s3_operations()
    assert not missing, f"not in botocore's S3 model: {sorted(missing)}"
    assert not NOT_COVERED - s3_operations()


def test_output_is_one_json_object_with_the_three_documents(printed: dict[str, Any]) -> None:
    assert set(printed) == {"identity_policy", "bucket_policy", "trust_policy"}
    for document in printed.values():
        assert document["Version"] == "2012-10-17"
        assert document["Statement"]


def test_every_action_named_is_mapped_to_real_operations(printed: dict[str, Any]) -> None:
    real = s3_operations()
    named = [
        action
        for name in ("identity_policy", "bucket_policy")
        for statement in printed[name]["Statement"]
        for action in actions_of(statement)
    ]
    for action in named:
        if action == "s3:*":  # only in conditional statements, checked below
            continue
        assert action in ACTION_OPERATIONS, f"{action} has no mapping"
        assert ACTION_OPERATIONS[action] <= real, action
    wildcard = [s for s in printed["bucket_policy"]["Statement"] if "s3:*" in actions_of(s)]
    assert all("Condition" in s and s["Effect"] == "Deny" for s in wildcard)


def test_identity_policy_allows_put_and_get_under_the_prefix_only(
    printed: dict[str, Any]
) -> None:
    [statement] = printed["identity_policy"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert sorted(actions_of(statement)) == ["s3:GetObject", "s3:PutObject"]
    assert statement["Resource"] == "arn:aws:s3:::acme-recordings/bucketreel/*"
    granted = {op for a in actions_of(statement) for op in ACTION_OPERATIONS[a]}
    assert not {op for op in granted if op.startswith(("List", "Delete"))}


def test_identity_policy_without_prefix_and_with_wildcard_characters() -> None:
    bare = iam_policy("--bucket", "acme-recordings")
    assert bare["identity_policy"]["Statement"][0]["Resource"] == "arn:aws:s3:::acme-recordings/*"
    starred = iam_policy("--bucket", "acme-recordings", "--prefix", "a*b")
    resource = starred["identity_policy"]["Statement"][0]["Resource"]
    assert resource == "arn:aws:s3:::acme-recordings/a${*}b/*", "a '*' must stay literal"


def test_bucket_policy_denies_delete_list_acl_retention_and_configuration(
    printed: dict[str, Any]
) -> None:
    policy = printed["bucket_policy"]
    assert all(s["Effect"] == "Deny" and s["Principal"] == {"AWS": PRINCIPAL}
               for s in policy["Statement"])
    denied = denied_operations(policy)
    real = s3_operations()
    deletes = {op for op in real if op.startswith("Delete")} - NOT_COVERED
    configs = {op for op in real if op.startswith("PutBucket")} - NOT_COVERED
    assert deletes - denied == set()
    assert OBJECT_LISTING - denied == set()
    assert configs - denied == set()
    for op in ("PutObjectAcl", "PutObjectRetention", "PutObjectLegalHold",
               "PutObjectLockConfiguration", "GetObjectAcl"):
        assert op in denied
    assert not denied & {"PutObject", "GetObject", "HeadObject"}, "the broker must still work"


def test_bucket_policy_conditions(printed: dict[str, Any]) -> None:
    by_sid = {s["Sid"]: s for s in printed["bucket_policy"]["Statement"]}
    conditions = [s["Condition"] for s in by_sid.values() if "Condition" in s]
    assert {"Bool": {"aws:SecureTransport": "false"}} in conditions
    assert {"NumericGreaterThan": {"s3:signatureAge": "600000"}} in conditions
    assert {"StringNotEquals": {"s3:signatureversion": "AWS4-HMAC-SHA256"}} in conditions
    overwrite = by_sid["BucketreelNoOverwrite"]
    assert overwrite["Condition"] == {"Null": {"s3:if-none-match": "true"}}
    assert overwrite["Resource"] == "arn:aws:s3:::acme-recordings/*"
    shorter = iam_policy("--bucket", "acme-recordings", "--max-signature-age-ms", "300000")
    assert {"NumericGreaterThan": {"s3:signatureAge": "300000"}} in [
        s.get("Condition") for s in shorter["bucket_policy"]["Statement"]
    ]


def test_trust_policy_requires_the_external_id(printed: dict[str, Any]) -> None:
    [statement] = printed["trust_policy"]["Statement"]
    assert statement == {
        "Sid": "BucketreelAssumeWithExternalId",
        "Effect": "Allow",
        "Principal": {"AWS": ASSUMER},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:ExternalId": "bre-ext-0123456789abcdef"}},
    }


@pytest.mark.parametrize(
    "args",
    [
        ["--bucket", "A"],
        ["--bucket", "ok-bucket", "--prefix", "../up"],
        ["--bucket", "ok-bucket", "--principal-arn", "not-an-arn"],
        ["--bucket", "ok-bucket", "--external-id", "x"],
        ["--bucket", "ok-bucket", "--max-signature-age-ms", "5"],
    ],
)
def test_bad_input_is_refused_with_exit_1(args: list[str]) -> None:
    with pytest.raises(BrokerCommandError, match="exited with code 1"):
        iam_policy(*args)


def test_moto_iam_accepts_the_documents(
    printed: dict[str, Any], s3_endpoint: S3Endpoint
) -> None:
    """moto's IAM validates policy grammar (actions, resources, conditions) like IAM does."""
    import boto3

    suffix = secrets.token_hex(4)
    iam = boto3.session.Session().client(
        "iam", endpoint_url=s3_endpoint.url, region_name="us-east-1",
        aws_access_key_id=s3_endpoint.access_key_id,
        aws_secret_access_key=s3_endpoint.secret_access_key,
    )
    created = iam.create_policy(
        PolicyName=f"bucketreel-broker-{suffix}",
        PolicyDocument=json.dumps(printed["identity_policy"]),
    )
    role = iam.create_role(
        RoleName=f"bucketreel-broker-{suffix}",
        AssumeRolePolicyDocument=json.dumps(printed["trust_policy"]),
    )
    assert created["Policy"]["Arn"].endswith(f":policy/bucketreel-broker-{suffix}")
    assert role["Role"]["RoleName"] == f"bucketreel-broker-{suffix}"
    bucket = s3_endpoint.create_bucket()
    s3_endpoint.client().put_bucket_policy(
        Bucket=bucket, Policy=json.dumps(iam_policy("--bucket", bucket)["bucket_policy"])
    )
    stored = json.loads(s3_endpoint.client().get_bucket_policy(Bucket=bucket)["Policy"])
    assert stored["Statement"][0]["Effect"] == "Deny"
