"""IAM documents a customer admin installs so the broker's principal can do only what it needs.

`bucketreel-broker iam-policy` prints all three (DESIGN G2–G4, issue 4 item 2):

- identity policy: `s3:PutObject` and `s3:GetObject` on `arn:aws:s3:::B/P/*`, nothing else;
- bucket policy: explicit Deny for the broker's principal on every delete, list, ACL,
  retention, legal-hold and bucket-configuration action, on overwriting (a PutObject without
  `If-None-Match`), on plain HTTP, on signatures older than `max_signature_age_ms`, and on any
  signature other than SigV4. A Deny wins over any Allow, so a too-broad identity policy
  attached later still cannot list or delete;
- trust policy for the role option: who may assume the role, only with the tenant's external
  ID (confused-deputy protection).

Only plain data here (dicts), no AWS calls.
"""

from __future__ import annotations

import re
from typing import Any

from broker.errors import InvalidInput
from shared.bucket.policy import POLICY_VERSION, object_arn

SIGNATURE_VERSION = "AWS4-HMAC-SHA256"
MAX_SIGNATURE_AGE_MS = 600_000  # 10 minutes: longer than any URL the broker signs (≤ 300 s)
PRINCIPAL_PLACEHOLDER = "arn:aws:iam::ACCOUNT_ID:user/bucketreel-broker"
ASSUMER_PLACEHOLDER = "arn:aws:iam::BROKER_ACCOUNT_ID:root"
EXTERNAL_ID_PLACEHOLDER = "EXTERNAL_ID_FROM_BUCKETREEL"

# What the broker's principal is allowed (identity policy).
ALLOWED_ACTIONS: tuple[str, ...] = ("s3:PutObject", "s3:GetObject")

# Denied on objects (resource arn:aws:s3:::B/*).
DENIED_OBJECT_ACTIONS: tuple[str, ...] = (
    # delete, every variant
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:DeleteObjectTagging",
    "s3:DeleteObjectVersionTagging",
    "s3:AbortMultipartUpload",
    "s3:BypassGovernanceRetention",
    # list
    "s3:ListMultipartUploadParts",
    # ACL
    "s3:PutObjectAcl",
    "s3:PutObjectVersionAcl",
    "s3:GetObjectAcl",
    "s3:GetObjectVersionAcl",
    # retention and legal hold
    "s3:PutObjectRetention",
    "s3:GetObjectRetention",
    "s3:PutObjectLegalHold",
    "s3:GetObjectLegalHold",
)

# Denied on the bucket (resource arn:aws:s3:::B).
DENIED_BUCKET_ACTIONS: tuple[str, ...] = (
    # delete
    "s3:DeleteBucket",
    "s3:DeleteBucketPolicy",
    "s3:DeleteBucketWebsite",
    "s3:DeleteBucketOwnershipControls",
    # list
    "s3:ListBucket",
    "s3:ListBucketVersions",
    "s3:ListBucketMultipartUploads",
    # ACL
    "s3:PutBucketAcl",
    "s3:GetBucketAcl",
    # retention (Object Lock)
    "s3:PutBucketObjectLockConfiguration",
    # bucket configuration
    "s3:PutBucketPolicy",
    "s3:PutBucketVersioning",
    "s3:PutLifecycleConfiguration",
    "s3:PutBucketCORS",
    "s3:PutBucketWebsite",
    "s3:PutBucketLogging",
    "s3:PutBucketNotification",
    "s3:PutBucketTagging",
    "s3:PutEncryptionConfiguration",
    "s3:PutReplicationConfiguration",
    "s3:PutBucketPublicAccessBlock",
    "s3:PutBucketOwnershipControls",
    "s3:PutBucketRequestPayment",
    "s3:PutAccelerateConfiguration",
    "s3:PutAnalyticsConfiguration",
    "s3:PutInventoryConfiguration",
    "s3:PutMetricsConfiguration",
    "s3:PutIntelligentTieringConfiguration",
)

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9!_.*'()/$?-]{0,200}$")
_PRINCIPAL_RE = re.compile(r"^arn:aws[a-z-]*:(iam|sts)::(\d{12}|[A-Z_]+):[\w+=,.@/-]+$")
_EXTERNAL_ID_RE = re.compile(r"^[\w+=,.@:/-]{2,1224}$")


def _validate(bucket: str, prefix: str, principal_arn: str, assumer_arn: str,
              external_id: str) -> None:
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise InvalidInput(f"{bucket!r} is not a valid S3 bucket name")
    if not _PREFIX_RE.match(prefix.strip("/")) or ".." in prefix.split("/"):
        raise InvalidInput("prefix may hold letters, digits and !_.*'()/- only")
    for label, arn in (("principal ARN", principal_arn), ("assumer ARN", assumer_arn)):
        if not _PRINCIPAL_RE.match(arn):
            raise InvalidInput(f"{label} {arn!r} is not an IAM user, role or account ARN")
    if not _EXTERNAL_ID_RE.match(external_id):
        raise InvalidInput("external ID must be 2 to 1224 characters of [A-Za-z0-9+=,.@:/_-]")


def identity_policy(bucket: str, prefix: str = "") -> dict[str, Any]:
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": "BucketreelWriteAndReadSegments",
                "Effect": "Allow",
                "Action": list(ALLOWED_ACTIONS),
                "Resource": object_arn(bucket, prefix),
            }
        ],
    }


def bucket_policy(
    bucket: str,
    principal_arn: str = PRINCIPAL_PLACEHOLDER,
    *,
    max_signature_age_ms: int = MAX_SIGNATURE_AGE_MS,
) -> dict[str, Any]:
    principal = {"AWS": principal_arn}
    bucket_arn = f"arn:aws:s3:::{bucket}"
    objects_arn = f"{bucket_arn}/*"

    def deny(sid: str, actions: list[str] | str, resource: list[str] | str,
             condition: dict[str, Any] | None = None) -> dict[str, Any]:
        statement: dict[str, Any] = {
            "Sid": sid, "Effect": "Deny", "Principal": principal, "Action": actions,
            "Resource": resource,
        }
        if condition is not None:
            statement["Condition"] = condition
        return statement

    everything = [bucket_arn, objects_arn]
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            deny("BucketreelNoDeleteListAclRetentionOnObjects", list(DENIED_OBJECT_ACTIONS),
                 objects_arn),
            deny("BucketreelNoDeleteListAclConfigOnBucket", list(DENIED_BUCKET_ACTIONS),
                 bucket_arn),
            deny("BucketreelNoOverwrite", "s3:PutObject", objects_arn,
                 {"Null": {"s3:if-none-match": "true"}}),
            deny("BucketreelTlsOnly", "s3:*", everything,
                 {"Bool": {"aws:SecureTransport": "false"}}),
            deny("BucketreelFreshSignaturesOnly", "s3:*", everything,
                 {"NumericGreaterThan": {"s3:signatureAge": str(max_signature_age_ms)}}),
            deny("BucketreelSigV4Only", "s3:*", everything,
                 {"StringNotEquals": {"s3:signatureversion": SIGNATURE_VERSION}}),
        ],
    }


def trust_policy(
    assumer_arn: str = ASSUMER_PLACEHOLDER, external_id: str = EXTERNAL_ID_PLACEHOLDER
) -> dict[str, Any]:
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": "BucketreelAssumeWithExternalId",
                "Effect": "Allow",
                "Principal": {"AWS": assumer_arn},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": external_id}},
            }
        ],
    }


def policies(
    bucket: str,
    prefix: str = "",
    *,
    principal_arn: str | None = None,
    assumer_arn: str | None = None,
    external_id: str | None = None,
    max_signature_age_ms: int = MAX_SIGNATURE_AGE_MS,
) -> dict[str, Any]:
    """All three documents; placeholders (upper-case names) stand for what was not given."""
    principal = principal_arn or PRINCIPAL_PLACEHOLDER
    assumer = assumer_arn or ASSUMER_PLACEHOLDER
    external = external_id or EXTERNAL_ID_PLACEHOLDER
    _validate(bucket, prefix, principal, assumer, external)
    if not 1_000 <= max_signature_age_ms <= 604_800_000:
        raise InvalidInput("the maximum signature age must be 1000 to 604800000 ms")
    return {
        "identity_policy": identity_policy(bucket, prefix),
        "bucket_policy": bucket_policy(
            bucket, principal, max_signature_age_ms=max_signature_age_ms
        ),
        "trust_policy": trust_policy(assumer, external),
    }
