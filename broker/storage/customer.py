"""What the customer sets up on their own side of the bucket (issue 18): the vault's read
policy, retention (a lifecycle rule and Object Lock) and the layout, saying who writes what.

`bucketreel-broker iam-policy --vault` adds `vault_policy` (`shared.bucket.policy`, which the
vault prints too): an identity policy for the customer's `bucketreel-vault` credentials,
`ListBucket` of keys under the prefix and `GetObject` under it; it can write, overwrite or
delete nothing.

`--retention-days N` adds `lifecycle_configuration` (for `put-bucket-lifecycle-configuration`)
and `object_lock_configuration` (for `put-object-lock-configuration`): every new object is
locked for N days (COMPLIANCE: no one, the vendor, the broker and the customer's own root
included, can delete or overwrite it sooner; GOVERNANCE lets principals with
`s3:BypassGovernanceRetention` do so), and after N days the lifecycle rule removes a tenant's
recordings, manifests and audit anchors (`--tenant`, one pair of rules each; `TENANT_ID`
stands in when none is given). Device and broker key records are never expired: they are
tiny and needed to verify whatever remains. A legal hold on an object keeps it past both
until it is lifted. Only the customer acts here: the broker can set no retention, hold or
lifecycle (its bucket policy denies it) and deletes nothing.

Either flag also adds `layout`: each key pattern, who writes it and how.

Only plain data here (dicts), no AWS calls.
"""

from __future__ import annotations

from typing import Any

from broker.errors import InvalidInput
from broker.storage.policy import policies
from shared.bucket.policy import vault_policy

TENANT_PLACEHOLDER = "TENANT_ID"
LOCK_MODES = ("COMPLIANCE", "GOVERNANCE")
MAX_RETENTION_DAYS = 36_500


def _root(prefix: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/" if prefix else ""


def object_lock_configuration(days: int, mode: str) -> dict[str, Any]:
    return {
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": mode, "Days": days}},
    }


def lifecycle_configuration(prefix: str, days: int, tenants: tuple[str, ...]) -> dict[str, Any]:
    root = _root(prefix)

    def rule(name: str, where: str) -> dict[str, Any]:
        return {
            "ID": name[:255], "Status": "Enabled", "Filter": {"Prefix": where},
            "Expiration": {"Days": days},
            # a versioned (Object Lock) bucket keeps the old version: gone a day later
            "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        }

    rules = []
    for tenant in tenants or (TENANT_PLACEHOLDER,):
        rules.append(rule(f"bucketreel-recordings-{tenant}", f"{root}{tenant}/"))
        rules.append(
            rule(f"bucketreel-audit-anchors-{tenant}", f"{root}_bucketreel/audit/{tenant}/")
        )
    return {"Rules": rules}


def layout(prefix: str) -> dict[str, str]:
    root = _root(prefix)
    return {
        f"{root}<tenant>/<user>/<recording>/<seq:06d>.mp4":
            "a segment: PUT by the agent with the broker's presigned URL (If-None-Match: *, "
            "signed size, SHA-256 and x-amz-meta-* custody record)",
        f"{root}<tenant>/<user>/<recording>/manifest.json":
            "the recording's manifest: PutObject by the broker, If-None-Match: *, signed",
        f"{root}_bucketreel/keys/<key_id>.json":
            "a broker public key: PutObject by the broker, If-None-Match: *",
        f"{root}_bucketreel/devices/<device_id>.json":
            "a device's key record: PutObject by the broker at enrollment, If-None-Match: *, "
            "signed",
        f"{root}_bucketreel/audit/<tenant>/<seq:012d>.json":
            "an audit anchor: PutObject by the broker, If-None-Match: *, signed",
        f"{root}_bucketreel/selfcheck/<random>":
            "the storage self-check's canary: PutObject by the broker, If-None-Match: *",
    }


def documents(
    bucket: str,
    prefix: str = "",
    *,
    vault: bool = False,
    retention_days: int | None = None,
    tenants: tuple[str, ...] = (),
    lock_mode: str = "COMPLIANCE",
) -> dict[str, Any]:
    """The documents the flags ask for (none: an empty dict)."""
    policies(bucket, prefix)  # the same checks of the bucket and prefix
    found: dict[str, Any] = {}
    if vault:
        found["vault_policy"] = vault_policy(bucket, prefix)
    if retention_days is not None:
        if not 1 <= retention_days <= MAX_RETENTION_DAYS:
            raise InvalidInput(f"retention days must be 1 to {MAX_RETENTION_DAYS}")
        if lock_mode not in LOCK_MODES:
            raise InvalidInput(f"the lock mode must be one of {', '.join(LOCK_MODES)}")
        for tenant in tenants:
            if not tenant or "/" in tenant or not tenant.isascii() or not tenant.isprintable():
                raise InvalidInput(f"{tenant!r} is not a tenant id")
        found["lifecycle_configuration"] = lifecycle_configuration(
            prefix, retention_days, tenants
        )
        found["object_lock_configuration"] = object_lock_configuration(
            retention_days, lock_mode
        )
    if found:
        found["layout"] = layout(prefix)
    return found
