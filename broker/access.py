"""Who may see whose recordings: the one place that decides it.

Admins see every user of their tenant; managers see the employees assigned to them; every
person sees their own (the right of access over data about them); devices see nobody's.
The tenant comes from the verified token through the scope, so nobody ever sees across
tenants. Every human read and every view URL goes through
`visible_users` or `require_visible`.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import ColumnElement, Row, false, select, true

from broker.db.schema import manager_assignments, users
from broker.db.scope import TenantScope
from broker.errors import NotFound
from broker.identity import Principal, Role

log = logging.getLogger("broker.access")


def _others(scope: TenantScope, principal: Principal) -> ColumnElement[bool]:
    """A condition on `users`: the other people this principal may see recordings of."""
    if principal.kind != "user" or principal.tenant_id != scope.tenant_id:
        return false()
    if principal.role == Role.ADMIN:
        return true()
    if principal.role == Role.MANAGER:
        assigned = select(manager_assignments.c.employee_id).where(
            manager_assignments.c.tenant_id == scope.tenant_id,
            manager_assignments.c.manager_id == principal.user_id,
        )
        return users.c.id.in_(assigned) & (users.c.role == Role.EMPLOYEE)
    return false()


def _visible(scope: TenantScope, principal: Principal) -> ColumnElement[bool]:
    """A condition on `users`: the rows this principal may see recordings of, their own
    included."""
    if principal.kind != "user" or principal.tenant_id != scope.tenant_id:
        return false()
    return _others(scope, principal) | (users.c.id == principal.user_id)


async def visible_users(scope: TenantScope, principal: Principal) -> list[Row[Any]]:
    """The people whose recordings the principal may watch besides their own (an admin's
    list is the whole tenant, the admin included)."""
    return await scope.all(users, _others(scope, principal), order_by=[users.c.email])


async def require_visible(scope: TenantScope, principal: Principal, user_id: str) -> Row[Any]:
    """The user, when the principal may see them; otherwise they do not exist for the caller."""
    row = await scope.one(users, _visible(scope, principal), users.c.id == user_id)
    if row is None:
        _denied(scope, principal, "recordings", user_id)
        raise NotFound("no such employee")
    return row


async def require_receipts(scope: TenantScope, principal: Principal, user_id: str) -> Row[Any]:
    """Whose view receipts (who watched their recordings, when) the principal may read:
    a person their own, an admin anyone's in the tenant. Nobody else's, and never a device."""
    own = principal.kind == "user" and principal.user_id == user_id
    admin = principal.kind == "user" and principal.role == Role.ADMIN
    row = None
    if (own or admin) and principal.tenant_id == scope.tenant_id:
        row = await scope.one(users, users.c.id == user_id)
    if row is None:
        _denied(scope, principal, "receipts", user_id)
        raise NotFound("no such person")
    return row


def _denied(scope: TenantScope, principal: Principal, what: str, user_id: str) -> None:
    log.info(
        "access denied: %s %s (%s) to the %s of user %s in tenant %s",
        principal.kind, principal.user_id, principal.role, what, user_id, scope.tenant_id,
    )
