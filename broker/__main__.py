"""`bucketreel-broker`: serve, migrate, make secrets, and operator commands.

Exit codes: 0 success, 1 the command failed, 2 usage error, 78 configuration refused
(a missing or weak secret, an unreadable env file), 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broker.errors import BrokerError, ConfigError
from broker.settings import PREFIX, Settings, generate_secrets, load_env_file
from shared import version
from shared.wire import POLICY_KEYS, POLICY_RANGES, PolicyUpdate, WireError, policy_value

if TYPE_CHECKING:
    from broker import admin

EX_USAGE = 2
EX_CONFIG = 78
log = logging.getLogger("broker")


class UsageError(BrokerError):
    """A command line argparse cannot judge alone (options that contradict each other)."""


def _environment(args: argparse.Namespace) -> dict[str, str]:
    """The environment, filled in from --env-file where a variable is not already set."""
    values = load_env_file(Path(args.env_file)) if args.env_file else {}
    return {**values, **os.environ}


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(_environment(args))


def _read_secret(label: str) -> str:
    """A secret from the terminal (not echoed), or the first line of standard input."""
    if sys.stdin.isatty():
        value = getpass.getpass(f"{label}: ")
    else:
        value = sys.stdin.readline().rstrip("\r\n")
    if not value:
        raise BrokerError(f"no {label} given on standard input")
    return value


def _print_json(data: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from broker.app import create_app
    from broker.web import logs

    settings = _settings(args)
    logs.configure(settings.log_level)
    log.info("serving on http://%s:%s", args.host, args.port)
    web.run_app(
        create_app(settings),
        host=args.host,
        port=args.port,
        access_log_class=logs.AccessLogger,
        print=None,
    )
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from broker.db import migrate
    from broker.db.engine import create_engine
    from broker.sealing import ChainKeys

    settings = _settings(args)

    async def run() -> str | None:
        engine = create_engine(settings.database_url)
        try:
            await migrate.upgrade(
                engine, audit_keys=ChainKeys.from_master(settings.master_keys)
            )
            return await migrate.current_revision(engine)
        finally:
            await engine.dispose()

    _print_json({"revision": asyncio.run(run())})
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
    from broker.storage import policy

    _print_json(
        policy.policies(
            args.bucket,
            args.prefix,
            principal_arn=args.principal_arn,
            assumer_arn=args.assumer_arn,
            external_id=args.external_id,
            max_signature_age_ms=args.max_signature_age_ms,
        )
    )
    return 0


def _always(_result: dict[str, Any]) -> bool:
    return True


def _admin(
    action: Callable[[admin.AdminContext, argparse.Namespace], Coroutine[Any, Any, dict[str, Any]]],
    *,
    ok: Callable[[dict[str, Any]], bool] = _always,
    check: Callable[[argparse.Namespace], None] | None = None,
) -> Callable[[argparse.Namespace], int]:
    """Run an operator command and print its JSON; exit 1 when `ok` judges the result bad.

    `check` judges the arguments first, before any setting or database is touched (it
    raises UsageError: exit 2).
    """

    def run(args: argparse.Namespace) -> int:
        from broker import admin  # imported here so --help and --version stay quick

        if check is not None:
            check(args)
        settings = _settings(args)

        async def go() -> dict[str, Any]:
            async with admin.context(settings) as ctx:
                return await action(ctx, args)

        result = asyncio.run(go())
        _print_json(result)
        return 0 if ok(result) else 1

    return run


def _storage_sound(status: dict[str, Any]) -> bool:
    """Access works and the last self-check found no right the broker must not have."""
    findings = (status.get("last_check") or {}).get("findings") or []
    return status.get("state") == "ok" and not findings


async def _create_tenant(ctx: admin.AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    from broker import admin

    return await admin.create_tenant(ctx, args.name)


async def _create_user(ctx: admin.AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    from broker import admin

    password = _read_secret("password")
    return await admin.create_user(
        ctx, tenant=args.tenant, email=args.email, role=args.role, password=password
    )


async def _set_storage(ctx: admin.AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    from broker import admin

    if (args.access_key_id is None) == (args.role_arn is None):
        raise BrokerError("give either --access-key-id (secret on standard input) or --role-arn")
    secret = _read_secret("secret access key") if args.access_key_id else None
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


async def _enrollment_code(ctx: admin.AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    from broker import admin

    return await admin.enrollment_code(ctx, tenant=args.tenant, user=args.user)


async def _view_url(ctx: admin.AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    from broker import admin

    return await admin.view_url(ctx, tenant=args.tenant, recording=args.recording, seq=args.seq)


async def _verify_recording(ctx: admin.AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    """The custody report; the command exits 1 when any segment is missing, altered or
    reordered."""
    from broker import admin

    return await admin.verify_recording(ctx, tenant=args.tenant, recording=args.recording)


async def _assign(ctx: admin.AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    from broker import admin

    return await admin.assign(ctx, tenant=args.tenant, manager=args.manager, employee=args.employee)


async def _devices(ctx: admin.AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    from broker import admin

    return await admin.devices(ctx, tenant=args.tenant)


async def _revoke_device(ctx: admin.AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    from broker import admin

    return await admin.revoke_device(ctx, tenant=args.tenant, device=args.device)


async def _set_device_cap(ctx: admin.AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    from broker import admin

    cap = None if args.clear else args.max
    return await admin.set_device_cap(ctx, tenant=args.tenant, user=args.user, cap=cap)


def _device_cap(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {raw!r}") from None
    if not 0 <= value <= 10_000:
        raise argparse.ArgumentTypeError("must be between 0 and 10000")
    return value


def _policy_flag(key: str) -> Callable[[str], float | int]:
    """The argparse type of a `set-policy` option: the policy's own checks (shared.wire)."""
    kind = POLICY_RANGES[key].kind

    def parse(text: str) -> float | int:
        try:
            number = kind(text)
        except ValueError:
            what = "a whole number of seconds" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        try:
            return policy_value(key, number)
        except WireError as exc:
            raise argparse.ArgumentTypeError(exc.message) from None

    return parse


def _policy_change(args: argparse.Namespace) -> None:
    """`set-policy`'s options as one PolicyUpdate (in `args.change`), or UsageError."""
    cleared = set(args.clear or ())
    given = {key: getattr(args, key) for key in POLICY_KEYS if getattr(args, key) is not None}
    both = sorted(cleared & set(given))
    if both:
        raise UsageError(f"{', '.join(both)}: both set and cleared; give one or the other")
    if not given and not cleared:
        raise UsageError(
            "nothing to change: give --fps, --segment-seconds, --idle-seconds or --clear KEY"
        )
    args.change = PolicyUpdate({**given, **dict.fromkeys(cleared)})


async def _set_policy(ctx: admin.AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    from broker import admin

    return await admin.set_policy(ctx, tenant=args.tenant, change=args.change)


async def _show_policy(ctx: admin.AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    from broker import admin

    return await admin.show_policy(ctx, tenant=args.tenant)


async def _rotate_master_key(ctx: admin.AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    from broker import admin

    return await admin.rotate_master_key(ctx, batch_size=args.batch_size)


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

    lines = admin.rotate_session_key(_settings(args))
    sys.stdout.write(
        "# Set both on every broker replica (env or --env-file) and restart them. Tokens signed\n"
        "# with the old key keep working until the next rotation drops it.\n"
    )
    for key, value in lines.items():
        sys.stdout.write(f"{key}={value}\n")
    return 0


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

    serve = sub.add_parser("serve", help="serve the HTTP API (applies migrations first)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port to bind (default 8080)")
    serve.set_defaults(func=cmd_serve)

    sub.add_parser(
        "migrate", help=f"apply database migrations ({PREFIX}DATABASE_URL)"
    ).set_defaults(func=cmd_migrate)
    sub.add_parser(
        "gen-secrets", help="print an env file with fresh random values for every secret"
    ).set_defaults(func=cmd_gen_secrets)

    iam = sub.add_parser(
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
    iam.set_defaults(func=cmd_iam_policy)

    adm = sub.add_parser("admin", help="operator commands; each prints JSON")
    adm_sub = adm.add_subparsers(dest="admin_command", required=True, metavar="ADMIN_COMMAND")

    p = adm_sub.add_parser("create-tenant", help="create a tenant")
    p.add_argument("name")
    p.set_defaults(func=_admin(_create_tenant))

    p = adm_sub.add_parser("create-user", help="create a user (password on standard input)")
    p.add_argument("--tenant", required=True, help="tenant id or name")
    p.add_argument("--email", required=True)
    p.add_argument("--role", required=True, choices=["employee", "manager", "admin"])
    p.set_defaults(func=_admin(_create_user))

    p = adm_sub.add_parser(
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
    p.set_defaults(func=_admin(_set_storage))

    p = adm_sub.add_parser(
        "check-storage", help="run the storage self-check now (probes: see the admin guide)"
    )
    p.add_argument("--tenant", required=True, help="tenant id or name")
    p.set_defaults(func=_admin(_check_storage, ok=_storage_sound))

    p = adm_sub.add_parser(
        "storage", help="show the tenant's storage, access state, external ID, last check"
    )
    p.add_argument("--tenant", required=True, help="tenant id or name")
    p.set_defaults(func=_admin(_storage_status))

    p = adm_sub.add_parser("enrollment-code", help="issue a one-time code to enroll an agent")
    p.add_argument("--tenant", required=True, help="tenant id or name")
    p.add_argument("--user", required=True, help="user id or email the device records")
    p.set_defaults(func=_admin(_enrollment_code))

    p = adm_sub.add_parser("view-url", help="print a short-lived GET URL for one segment")
    p.add_argument("--tenant", required=True, help="tenant id or name")
    p.add_argument("--recording", required=True)
    p.add_argument("--seq", required=True, type=int)
    p.set_defaults(func=_admin(_view_url))

    p = adm_sub.add_parser(
        "verify-recording",
        help="re-check a recording's chain of custody against the bucket (exit 1 on findings)",
    )
    p.add_argument("--tenant", required=True, help="tenant id or name")
    p.add_argument("recording", metavar="ID", help="recording id")
    p.set_defaults(func=_admin(_verify_recording, ok=lambda report: bool(report["ok"])))

    p = adm_sub.add_parser("assign", help="let a manager see an employee's recordings")
    p.add_argument("--tenant", required=True, help="tenant id or name")
    p.add_argument("--manager", required=True, help="manager's user id or email")
    p.add_argument("--employee", required=True, help="employee's user id or email")
    p.set_defaults(func=_admin(_assign))

    p = adm_sub.add_parser("devices", help="list the tenant's devices")
    p.add_argument("--tenant", required=True, help="tenant id or name")
    p.set_defaults(func=_admin(_devices))

    p = adm_sub.add_parser("revoke-device", help="revoke a device; its tokens stop at once")
    p.add_argument("--tenant", required=True, help="tenant id or name")
    p.add_argument("--device", required=True, help="device id")
    p.set_defaults(func=_admin(_revoke_device))

    p = adm_sub.add_parser(
        "set-device-cap",
        help="how many devices not revoked a person may have: the tenant's cap, or with "
        "--user one person's (default BUCKETREEL_DEVICE_CAP)",
    )
    p.add_argument("--tenant", required=True, help="tenant id or name")
    p.add_argument("--user", help="a person's id or email (else the tenant's cap)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--max", type=_device_cap, help="the cap (0-10000)")
    which.add_argument("--clear", action="store_true", help="back to the default")
    p.set_defaults(func=_admin(_set_device_cap))

    p = adm_sub.add_parser(
        "set-policy",
        help="set the recording policy pushed to the tenant's agents (fps, segment length, "
        "idle timeout)",
        description="Set the tenant's recording policy. Every agent of the tenant gets it with "
        "its next heartbeat and applies it from its next segment; a setting given on an "
        "agent's command line still wins. Options not given keep their value; --clear hands a "
        "setting back to each agent's own configuration. Prints the policy (JSON); audited.",
    )
    p.add_argument("--tenant", required=True, help="tenant id or name")
    p.add_argument(
        "--fps", type=_policy_flag("fps"), metavar="X",
        help=f"frames per second (more than 0, at most {POLICY_RANGES['fps'].hi:g})",
    )
    p.add_argument(
        "--segment-seconds", type=_policy_flag("segment_seconds"), metavar="S",
        help="length of each segment in seconds "
        f"({POLICY_RANGES['segment_seconds'].lo:g} to {POLICY_RANGES['segment_seconds'].hi:g})",
    )
    p.add_argument(
        "--idle-seconds", type=_policy_flag("idle_seconds"), metavar="N",
        help="pause after N seconds without input, whole seconds "
        f"(0 never pauses, at most {POLICY_RANGES['idle_seconds'].hi:g})",
    )
    p.add_argument(
        "--clear", nargs="+", action="extend", choices=POLICY_KEYS, metavar="KEY",
        help=f"unset these keys ({', '.join(POLICY_KEYS)}): each agent decides again",
    )
    p.set_defaults(func=_admin(_set_policy, check=_policy_change))

    p = adm_sub.add_parser(
        "show-policy", help="show the tenant's recording policy (null: left to each agent)"
    )
    p.add_argument("--tenant", required=True, help="tenant id or name")
    p.set_defaults(func=_admin(_show_policy))

    p = adm_sub.add_parser(
        "audit-verify", help="verify the tenant's hash-chained audit log (exit 1 when broken)"
    )
    p.add_argument("--tenant", required=True, help="tenant id or name")
    p.set_defaults(func=_admin(_audit_verify))

    adm_sub.add_parser(
        "rotate-session-key",
        help="print env lines promoting a new token-signing key (current becomes previous)",
    ).set_defaults(func=cmd_rotate_session_key)

    p = adm_sub.add_parser(
        "rotate-master-key",
        help="re-seal every stored secret under the highest BUCKETREEL_MASTER_KEYS version",
    )
    p.add_argument("--batch-size", type=int, default=200, help="rows per transaction")
    p.set_defaults(func=_admin(_rotate_master_key))
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


if __name__ == "__main__":
    sys.exit(main())
