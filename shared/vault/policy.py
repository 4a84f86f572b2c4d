"""The least IAM policy the vault needs: list the prefix, read under it. Nothing writes,
deletes, or touches retention: the vault cannot change what it checks."""

from __future__ import annotations

from typing import Any


def reader_policy(bucket: str, prefix: str) -> dict[str, Any]:
    base = prefix.strip("/")
    objects = f"arn:aws:s3:::{bucket}/{base}/*" if base else f"arn:aws:s3:::{bucket}/*"
    listing: dict[str, Any] = {
        "Sid": "ListTheRecordings",
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": f"arn:aws:s3:::{bucket}",
    }
    if base:
        listing["Condition"] = {"StringLike": {"s3:prefix": [f"{base}/*"]}}
    return {
        "Version": "2012-10-17",
        "Statement": [
            listing,
            {
                "Sid": "ReadTheRecordings",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": objects,
            },
        ],
    }
