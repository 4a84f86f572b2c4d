"""`serve`, `migrate`, `gen-secrets`, `iam-policy`: running the broker and setting it up."""

from __future__ import annotations

import argparse
import asyncio
import sys

from broker.cli.common import print_json, settings_from
from broker.settings import PREFIX, generate_secrets


def cmd_serve(args: argparse.Namespace) -> int:
    from broker.app import serve

    serve(settings_from(args), host=args.host, port=args.port)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from broker.db import migrate
    from broker.db.engine import create_engine
    from broker.sealing import ChainKeys

    settings = settings_from(args)

    async def run() -> str | None:
        engine = create_engine(settings.database_url)
        try:
            await migrate.upgrade(
                engine, audit_keys=ChainKeys.from_master(settings.master_keys)
            )
            return await migrate.current_revision(engine)
        finally:
            await engine.dispose()

    print_json({"revision": asyncio.run(run())})
    return 0


def cmd_gen_secrets(_args: argparse.Namespace) -> int:
    sys.stdout.write(
        "# bucketreel broker secrets: keep this file private (chmod 600), never commit it.\n"
    )
    for key, value in generate_secrets().items():
        sys.stdout.write(f"{key}={value}\n")
    return 0


def cmd_iam_policy(args: argparse.Namespace) -> int:
    """Print the identity, bucket and trust policies for a customer's bucket (no settings)."""
    from broker.storage import customer, policy

    print_json({
        **policy.policies(
            args.bucket,
            args.prefix,
            principal_arn=args.principal_arn,
            assumer_arn=args.assumer_arn,
            external_id=args.external_id,
            max_signature_age_ms=args.max_signature_age_ms,
        ),
        **customer.documents(
            args.bucket, args.prefix, vault=args.vault, retention_days=args.retention_days,
            tenants=tuple(args.tenant or ()), lock_mode=args.lock_mode,
        ),
    })
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser("serve", help="serve the HTTP API (applies migrations first)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port to bind (default 8080)")
    serve.set_defaults(func=cmd_serve)

    commands.add_parser(
        "migrate", help=f"apply database migrations ({PREFIX}DATABASE_URL)"
    ).set_defaults(func=cmd_migrate)
    commands.add_parser(
        "gen-secrets", help="print an env file with fresh random values for every secret"
    ).set_defaults(func=cmd_gen_secrets)

    iam = commands.add_parser(
        "iam-policy",
        help="print the IAM identity, bucket and trust policies for the broker (JSON)",
    )
    iam.add_argument("--bucket", required=True)
    iam.add_argument("--prefix", default="", help="key prefix the broker writes under")
    iam.add_argument("--principal-arn", help="ARN of the IAM user or role the broker signs as")
    iam.add_argument("--assumer-arn", help="role option: ARN allowed to assume the role")
    iam.add_argument("--external-id", help="role option: the tenant's external ID")
    iam.add_argument(
        "--max-signature-age-ms",
        type=int,
        default=600_000,
        help="deny signatures older than this (default 600000)",
    )
    iam.add_argument(
        "--vault", action="store_true",
        help="also print vault_policy: read and list under the prefix, for the customer's "
        "bucketreel-vault credentials (and the layout)",
    )
    iam.add_argument(
        "--retention-days", type=int, metavar="N",
        help="also print the lifecycle rule that removes recordings after N days and the "
        "Object Lock settings that keep every object N days (and the layout)",
    )
    iam.add_argument(
        "--tenant", action="append", metavar="TENANT_ID",
        help="with --retention-days: a tenant whose recordings the lifecycle rule covers "
        "(repeatable; default: the placeholder TENANT_ID)",
    )
    iam.add_argument(
        "--lock-mode", choices=["COMPLIANCE", "GOVERNANCE"], default="COMPLIANCE",
        help="with --retention-days: Object Lock mode (default COMPLIANCE: no one can delete "
        "sooner, the bucket's owner included)",
    )
    iam.set_defaults(func=cmd_iam_policy)
