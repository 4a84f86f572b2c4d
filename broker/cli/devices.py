"""`admin enrollment-code`, `devices`, `revoke-device`, `set-device-cap`, `set-policy`,
`show-policy`: the tenant's agents and what they record."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from broker.cli.common import UsageError, admin_command
from shared.api import CODE_TTL_MAX, CODE_TTL_MIN, MAX_CODE_LABEL, MAX_CODE_USES
from shared.wire import (
    POLICY_KEYS,
    POLICY_RANGES,
    QUALITY_LEVELS,
    PolicyUpdate,
    PolicyValue,
    WireError,
    policy_value,
)

if TYPE_CHECKING:
    from broker import admin


async def _enrollment_code(ctx: admin.AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    from broker import admin

    return await admin.enrollment_code(
        ctx, tenant=args.tenant, user=args.user, uses=args.uses, expires_in=args.expires_in,
        label=args.label,
    )


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


def _bounded(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse type: a whole number from `lo` to `hi`."""

    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {raw!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be between {lo} and {hi}")
        return value

    return parse


_device_cap = _bounded(0, 10_000)


def _label(raw: str) -> str:
    if not 1 <= len(raw) <= MAX_CODE_LABEL:
        raise argparse.ArgumentTypeError(f"must be 1 to {MAX_CODE_LABEL} characters")
    return raw


def _policy_flag(key: str) -> Callable[[str], PolicyValue]:
    """The argparse type of a `set-policy` option: the policy's own checks (shared.wire)."""
    kind = POLICY_RANGES[key].kind

    def parse(text: str) -> PolicyValue:
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
            "nothing to change: give --fps, --segment-seconds, --idle-seconds, --quality or "
            "--clear KEY"
        )
    args.change = PolicyUpdate({**given, **dict.fromkeys(cleared)})


async def _set_policy(ctx: admin.AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    from broker import admin

    return await admin.set_policy(ctx, tenant=args.tenant, change=args.change)


async def _show_policy(ctx: admin.AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    from broker import admin

    return await admin.show_policy(ctx, tenant=args.tenant)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "enrollment-code",
        help="issue a code to enroll agents (one-time, or for up to --uses devices)",
    )
    p.add_argument("--tenant", required=True, help="tenant id or name")
    p.add_argument("--user", required=True, help="user id or email the device records")
    p.add_argument(
        "--uses", type=_bounded(1, MAX_CODE_USES), default=1, metavar="N",
        help=f"how many devices the code enrolls (default 1, at most {MAX_CODE_USES})",
    )
    p.add_argument(
        "--expires-in", type=_bounded(CODE_TTL_MIN, CODE_TTL_MAX), metavar="SECONDS",
        help=f"how long the code works ({CODE_TTL_MIN} to {CODE_TTL_MAX} s; default "
        "BUCKETREEL_ENROLLMENT_CODE_TTL)",
    )
    p.add_argument("--label", type=_label, help="what the code is for, shown in its list")
    p.set_defaults(func=admin_command(_enrollment_code))

    p = commands.add_parser("devices", help="list the tenant's devices")
    p.add_argument("--tenant", required=True, help="tenant id or name")
    p.set_defaults(func=admin_command(_devices))

    p = commands.add_parser("revoke-device", help="revoke a device; its tokens stop at once")
    p.add_argument("--tenant", required=True, help="tenant id or name")
    p.add_argument("--device", required=True, help="device id")
    p.set_defaults(func=admin_command(_revoke_device))

    p = commands.add_parser(
        "set-device-cap",
        help="how many devices not revoked a person may have: the tenant's cap, or with "
        "--user one person's (default BUCKETREEL_DEVICE_CAP)",
    )
    p.add_argument("--tenant", required=True, help="tenant id or name")
    p.add_argument("--user", help="a person's id or email (else the tenant's cap)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--max", type=_device_cap, help="the cap (0-10000)")
    which.add_argument("--clear", action="store_true", help="back to the default")
    p.set_defaults(func=admin_command(_set_device_cap))

    p = commands.add_parser(
        "set-policy",
        help="set the recording policy pushed to the tenant's agents (fps, segment length, "
        "idle timeout, quality level)",
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
        "--quality", choices=QUALITY_LEVELS, metavar="LEVEL",
        help="picture quality and size: high (H.264, larger files, crisper text), standard "
        "(H.264, the agents' default), compact (H.264, smaller, softer text) or "
        "av1 (SVT-AV1: several times the CPU on the workstation, and measured it "
        "does not reliably beat standard's bytes, README; plays in Chrome, Edge and "
        "Firefox, in Safari only with hardware AV1 decoding)",
    )
    p.add_argument(
        "--clear", nargs="+", action="extend", choices=POLICY_KEYS, metavar="KEY",
        help=f"unset these keys ({', '.join(POLICY_KEYS)}): each agent decides again",
    )
    p.set_defaults(func=admin_command(_set_policy, check=_policy_change))

    p = commands.add_parser(
        "show-policy", help="show the tenant's recording policy (null: left to each agent)"
    )
    p.add_argument("--tenant", required=True, help="tenant id or name")
    p.set_defaults(func=admin_command(_show_policy))
