"""`bucketreel-broker`: serve, migrate, make secrets, and operator commands.

One module per command group, each registering its own arguments: `server` (serve, migrate,
gen-secrets, iam-policy) and, under `admin`, `tenants`, `storage`, `devices`, `recordings`,
`keys`. `main` is the one top-level error handler.

Exit codes: 0 success, 1 the command failed, 2 usage error, 78 configuration refused
(a missing or weak secret, an unreadable env file), 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys

from broker.cli import devices, keys, recordings, server, storage, tenants
from broker.cli.common import EX_CONFIG, EX_USAGE, UsageError
from broker.errors import BrokerError, ConfigError
from shared import version

log = logging.getLogger("broker")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bucketreel-broker",
        description=(
            "The bucketreel broker: login, metadata and URL signing for recordings that live "
            "in the customer's own S3 bucket. Settings come from BUCKETREEL_* environment "
            "variables (and --env-file)."
        ),
        epilog="First setup: bucketreel-broker gen-secrets > broker.env && chmod 600 broker.env",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    parser.add_argument(
        "--env-file",
        metavar="PATH",
        help="read KEY=value settings from this file (mode 600); the environment wins",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    server.register(sub)

    adm = sub.add_parser("admin", help="operator commands; each prints JSON")
    adm_sub = adm.add_subparsers(dest="admin_command", required=True, metavar="ADMIN_COMMAND")
    for group in (tenants, storage, devices, recordings, keys):
        group.register(adm_sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
        return result
    except UsageError as exc:
        print(f"bucketreel-broker: usage error: {exc.message}", file=sys.stderr)
        return EX_USAGE
    except ConfigError as exc:
        print(f"bucketreel-broker: {exc.message}", file=sys.stderr)
        return EX_CONFIG
    except BrokerError as exc:
        print(f"bucketreel-broker: error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
