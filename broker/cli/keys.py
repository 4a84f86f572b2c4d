"""`admin audit-verify`, `rotate-session-key`, `rotate-master-key`, `signing-key`: the audit
chain and the broker's own keys."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from broker.cli.common import admin_command, settings_from
from broker.errors import BrokerError

if TYPE_CHECKING:
    from broker import admin


async def _audit_verify(ctx: admin.AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    """Check the tenant's hash chain; a broken chain is an error (exit 1) naming each break."""
    from broker.accounts import service as accounts
    from broker.audit import log as audit
    from broker.db.scope import TenantScope

    async with ctx.db.transaction() as conn:
        scope = TenantScope(conn, await accounts.resolve_tenant(conn, args.tenant))
        report = await audit.verify_chain(scope)
    if report.problems:
        raise BrokerError(
            f"the audit log of tenant {args.tenant} is BROKEN ({len(report.problems)} "
            f"problems in {report.entries} entries): " + "; ".join(report.problems)
        )
    head = report.head
    return {
        "tenant_id": scope.tenant_id,
        "entries": report.entries,
        "intact": True,
        "mac_keys": report.key_versions,
        "head": {"seq": head.seq, "hash": head.hash, "mac": head.mac, "mac_key": head.mac_key}
        if head is not None else None,
    }


def cmd_rotate_session_key(args: argparse.Namespace) -> int:
    from broker import admin

    lines = admin.rotate_session_key(settings_from(args))
    sys.stdout.write(
        "# Set both on every broker replica (env or --env-file) and restart them. Tokens signed\n"
        "# with the old key keep working until the next rotation drops it.\n"
    )
    for key, value in lines.items():
        sys.stdout.write(f"{key}={value}\n")
    return 0


def cmd_signing_key(args: argparse.Namespace) -> int:
    """The public half of the broker's bucket signing key, for the customer to pin: the
    vault can then refuse documents signed by any other key, whatever `_bucketreel/keys/`
    holds. Never the private key."""
    from broker.bucket.signing import broker_signer
    from broker.cli.common import print_json

    signer = broker_signer(settings_from(args))
    print_json({"key_id": signer.key_id, "algorithm": "Ed25519", "public_key": signer.public_key})
    return 0


async def _rotate_master_key(ctx: admin.AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    from broker import admin

    return await admin.rotate_master_key(ctx, batch_size=args.batch_size)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "audit-verify", help="verify the tenant's hash-chained audit log (exit 1 when broken)"
    )
    p.add_argument("--tenant", required=True, help="tenant id or name")
    p.set_defaults(func=admin_command(_audit_verify))

    commands.add_parser(
        "rotate-session-key",
        help="print env lines promoting a new token-signing key (current becomes previous)",
    ).set_defaults(func=cmd_rotate_session_key)

    p = commands.add_parser(
        "rotate-master-key",
        help="re-seal every stored secret under the highest BUCKETREEL_MASTER_KEYS version",
    )
    p.add_argument("--batch-size", type=int, default=200, help="rows per transaction")
    p.set_defaults(func=admin_command(_rotate_master_key))

    commands.add_parser(
        "signing-key",
        help="print the key id and public key the broker signs the bucket's records with "
        "(to pin in bucketreel-vault)",
    ).set_defaults(func=cmd_signing_key)
