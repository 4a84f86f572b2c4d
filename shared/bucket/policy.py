"""The customer's read policy for `bucketreel-vault`: list and read under the prefix, nothing
else (it writes, overwrites and deletes nothing). Plain data, so that the vault prints it
without the broker, and the broker's `iam-policy --vault` prints the same document."""

from __future__ import annotations

from typing import Any

POLICY_VERSION = "2012-10-17"
VAULT_LIST_ACTIONS: tuple[str, ...] = ("s3:ListBucket",)
VAULT_OBJECT_ACTIONS: tuple[str, ...] = ("s3:GetObject",)  # GetObject and HeadObject


def escape_arn_part(value: str) -> str:
    """IAM treats `*` and `?` in a resource ARN (and a StringLike value) as wildcards: keep
    them literal."""
    return "".join({"*": "${*}", "?": "${?}", "$": "${$}"}.get(c, c) for c in value)


def object_arn(bucket: str, prefix: str) -> str:
    """`arn:aws:s3:::B/P/*`, or `arn:aws:s3:::B/*` without a prefix."""
    prefix = prefix.strip("/")
    path = f"{escape_arn_part(prefix)}/*" if prefix else "*"
    return f"arn:aws:s3:::{bucket}/{path}"


def vault_policy(bucket: str, prefix: str = "") -> dict[str, Any]:
    """`ListObjectsV2` of keys under `P/` only, `GetObject`/`HeadObject` of objects under it."""
    listing: dict[str, Any] = {
        "Sid": "BucketreelVaultListUnderThePrefix", "Effect": "Allow",
        "Action": list(VAULT_LIST_ACTIONS), "Resource": f"arn:aws:s3:::{bucket}",
    }
    root = prefix.strip("/")
    if root:
        listing["Condition"] = {"StringLike": {"s3:prefix": [f"{escape_arn_part(root)}/*"]}}
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            listing,
            {
                "Sid": "BucketreelVaultReadUnderThePrefix", "Effect": "Allow",
                "Action": list(VAULT_OBJECT_ACTIONS), "Resource": object_arn(bucket, prefix),
            },
        ],
    }
