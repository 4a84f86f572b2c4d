"""`admin set-storage`, `check-storage`, `storage`: the tenant's bucket and the broker's access."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from broker.cli.common import admin_command, read_secret
from broker.errors import BrokerError

if TYPE_CHECKING:
    from broker import admin


async def _set_storage(ctx: admin.AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    from broker import admin

    if (args.access_key_id is None) == (args.role_arn is None):
        raise BrokerError("give either --access-key-id (secret on standard input) or --role-arn")
    secret = read_secret("secret access key") if args.access_key_id else None
    return await admin.set_storage(
        ctx,
        tenant=args.tenant,
        bucket=args.bucket,
        region=args.region,
        endpoint_url=args.endpoint_url,
        prefix=args.prefix,
        access_key_id=args.access_key_id,
        secret_access_key=secret,
        role_arn=args.role_arn,
        accept_risk=args.accept_risk,
    )


async def _check_storage(ctx: admin.AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    from broker import admin

    return await admin.check_storage(ctx, tenant=args.tenant)


async def _storage_status(ctx: admin.AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    from broker import admin

    return await admin.storage_status(ctx, tenant=args.tenant)


def _storage_sound(status: dict[str, Any]) -> bool:
    """Access works and the last self-check found no right the broker must not have."""
    findings = (status.get("last_check") or {}).get("findings") or []
    return status.get("state") == "ok" and not findings


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "set-storage", help="set the tenant's bucket and credentials (secret on standard input)"
    )
    p.add_argument("--tenant", required=True, help="tenant id or name")
    p.add_argument("--bucket", required=True)
    p.add_argument("--region", required=True)
    p.add_argument("--endpoint-url", help="S3-compatible endpoint (default: AWS)")
    p.add_argument("--prefix", default="", help="key prefix inside the bucket")
    p.add_argument("--access-key-id", help="static keys: the IAM access key id")
    p.add_argument(
        "--role-arn",
        help="role option: the role the broker assumes (see "
        "`admin storage` for the tenant's external ID)",
    )
    p.add_argument(
        "--accept-risk",
        action="store_true",
        help="save even when the self-check finds rights the broker must not have (audited)",
    )
    p.set_defaults(func=admin_command(_set_storage))

    p = commands.add_parser(
        "check-storage", help="run the storage self-check now (probes: see the admin guide)"
    )
    p.add_argument("--tenant", required=True, help="tenant id or name")
    p.set_defaults(func=admin_command(_check_storage, ok=_storage_sound))

    p = commands.add_parser(
        "storage", help="show the tenant's storage, access state, external ID, last check"
    )
    p.add_argument("--tenant", required=True, help="tenant id or name")
    p.set_defaults(func=admin_command(_storage_status))
