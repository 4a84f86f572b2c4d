"""`admin create-tenant`, `create-user`, `assign`: tenants, people, who watches whom."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from broker.cli.common import admin_command, read_secret

if TYPE_CHECKING:
    from broker import admin


async def _create_tenant(ctx: admin.AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    from broker import admin

    return await admin.create_tenant(ctx, args.name)


async def _create_user(ctx: admin.AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    from broker import admin

    password = read_secret("password")
    return await admin.create_user(
        ctx, tenant=args.tenant, email=args.email, role=args.role, password=password,
        name=args.name,
    )


async def _assign(ctx: admin.AdminContext, args: argparse.Namespace) -> dict[str, Any]:
    from broker import admin

    return await admin.assign(ctx, tenant=args.tenant, manager=args.manager, employee=args.employee)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser("create-tenant", help="create a tenant")
    p.add_argument("name")
    p.set_defaults(func=admin_command(_create_tenant))

    p = commands.add_parser("create-user", help="create a user (password on standard input)")
    p.add_argument("--tenant", required=True, help="tenant id or name")
    p.add_argument("--email", required=True)
    p.add_argument("--role", required=True, choices=["employee", "manager", "admin"])
    p.add_argument("--name", help="the name the person goes by, shown beside the email")
    p.set_defaults(func=admin_command(_create_user))

    p = commands.add_parser("assign", help="let a manager see an employee's recordings")
    p.add_argument("--tenant", required=True, help="tenant id or name")
    p.add_argument("--manager", required=True, help="manager's user id or email")
    p.add_argument("--employee", required=True, help="employee's user id or email")
    p.set_defaults(func=admin_command(_assign))
