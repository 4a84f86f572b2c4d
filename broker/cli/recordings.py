"""`admin view-url`, `verify-recording`: one segment's short-lived URL, a recording's custody."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from broker.cli.common import admin_command

if TYPE_CHECKING:
    from broker import admin


async def _view_url(ctx: admin.AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    from broker import admin

    return await admin.view_url(ctx, tenant=args.tenant, recording=args.recording, seq=args.seq)


async def _verify_recording(ctx: admin.AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    """The custody report; the command exits 1 when any segment is missing, altered or
    reordered."""
    from broker import admin

    return await admin.verify_recording(ctx, tenant=args.tenant, recording=args.recording)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser("view-url", help="print a short-lived GET URL for one segment")
    p.add_argument("--tenant", required=True, help="tenant id or name")
    p.add_argument("--recording", required=True)
    p.add_argument("--seq", required=True, type=int)
    p.set_defaults(func=admin_command(_view_url))

    p = commands.add_parser(
        "verify-recording",
        help="re-check a recording's chain of custody against the bucket (exit 1 on findings)",
    )
    p.add_argument("--tenant", required=True, help="tenant id or name")
    p.add_argument("recording", metavar="ID", help="recording id")
    p.set_defaults(func=admin_command(_verify_recording, ok=lambda report: bool(report["ok"])))
