"""Tenants and users: creation by an operator (the admin CLI), roles and manager assignments."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Row, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from broker.accounts.passwords import Passwords
from broker.audit import log as audit
from broker.clock import Clock
from broker.db.database import Database
from broker.db.schema import manager_assignments, tenants, users
from broker.db.scope import TenantScope
from broker.errors import Conflict, InvalidInput, NotFound
from broker.identity import Role

_EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")


async def create_tenant(conn: AsyncConnection, *, name: str, now: datetime) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise InvalidInput("tenant name must be 1 to 200 characters long")
    tenant_id = str(uuid.uuid4())
    scope = TenantScope(conn, tenant_id)
    await audit.lock_chain(scope)  # before the first write (README's lock order)
    try:
        async with conn.begin_nested():
            await conn.execute(insert(tenants).values(id=tenant_id, name=name, created_at=now))
    except IntegrityError:
        raise Conflict(f"a tenant named {name!r} exists already") from None
    await audit.record(
        scope,
        at=now,
        actor="operator",
        action="tenant.create",
        target=tenant_id,
        details={"name": name},
    )
    return tenant_id


async def resolve_tenant(conn: AsyncConnection, ref: str) -> str:
    """A tenant id from an id or a name (operator input on the CLI)."""
    row = (
        await conn.execute(
            select(tenants.c.id).where((tenants.c.id == ref) | (tenants.c.name == ref))
        )
    ).first()
    if row is None:
        raise NotFound(f"no tenant {ref!r}")
    return str(row.id)


def check_email(email: str) -> str:
    """An email as stored (trimmed, lower case), or 400 naming the field."""
    email = email.strip().lower()
    if not _EMAIL_RE.match(email):
        raise InvalidInput(f"email: {email!r} is not an email address")
    return email


MAX_NAME = 200


def check_name(name: str | None) -> str | None:
    """A display name as stored (trimmed; None when empty), or 400 naming the field."""
    name = " ".join((name or "").split())
    if len(name) > MAX_NAME:
        raise InvalidInput(f"name must be at most {MAX_NAME} characters long")
    if any(not c.isprintable() for c in name):
        raise InvalidInput("name must not contain control characters")
    return name or None


def check_role(role: str) -> str:
    try:
        return Role(role).value
    except ValueError:
        raise InvalidInput(f"role must be one of {', '.join(r.value for r in Role)}") from None


async def create_user(
    scope: TenantScope,
    *,
    email: str,
    role: str,
    password: str,
    passwords: Passwords,
    now: datetime,
    actor: str,
    display_name: str | None = None,
) -> str:
    email, role, display_name = check_email(email), check_role(role), check_name(display_name)
    user_id = str(uuid.uuid4())
    password_hash = passwords.hash(password)
    await audit.lock_chain(scope)  # before the first write (README's lock order)
    try:
        async with scope.conn.begin_nested():
            await scope.insert(
                users,
                id=user_id,
                email=email,
                role=role,
                password_hash=password_hash,
                session_version=1,
                created_at=now,
                display_name=display_name,
            )
    except IntegrityError:
        raise Conflict(f"a user {email!r} exists already in this tenant") from None
    await audit.record(
        scope,
        at=now,
        actor=actor,
        action="user.create",
        target=user_id,
        details={"email": email, "role": role, "name": display_name},
    )
    return user_id


async def resolve_user(scope: TenantScope, ref: str) -> str:
    """A user id of this tenant from an id or an email."""
    row = await scope.one(users, (users.c.id == ref) | (users.c.email == ref.strip().lower()))
    if row is None:
        raise NotFound(f"no user {ref!r} in this tenant")
    return str(row.id)


async def email_and_name_of(scope: TenantScope, user_id: str) -> tuple[str, str | None]:
    """A user's email and the name they go by, or ("", None) when this tenant has no such
    user."""
    row = await scope.one(users, users.c.id == user_id)
    return (str(row.email), row.display_name) if row else ("", None)


async def pair_of(
    scope: TenantScope, manager_id: str, employee_id: str
) -> tuple[Row[Any], Row[Any]]:
    """The rows of an assignment's manager and employee, or 404 when either is not here."""
    manager = await scope.one(users, users.c.id == manager_id)
    employee = await scope.one(users, users.c.id == employee_id)
    if manager is None or employee is None:
        raise NotFound("no such manager or employee in this tenant")
    return manager, employee


async def assign(
    scope: TenantScope, *, manager_id: str, employee_id: str, now: datetime, actor: str
) -> bool:
    """Let a manager see an employee's recordings; False when the pair existed already."""
    await audit.lock_chain(scope)  # before the first write (README's lock order)
    manager, employee = await pair_of(scope, manager_id, employee_id)
    if manager.role != Role.MANAGER:
        raise InvalidInput(f"{manager.email} is a {manager.role}, not a manager")
    if employee.role != Role.EMPLOYEE:
        raise InvalidInput(f"{employee.email} is a {employee.role}, not an employee")
    exists = await scope.one(
        manager_assignments,
        manager_assignments.c.manager_id == manager_id,
        manager_assignments.c.employee_id == employee_id,
    )
    if exists is not None:
        return False
    await scope.insert(
        manager_assignments, manager_id=manager_id, employee_id=employee_id, created_at=now
    )
    await audit.record(
        scope,
        at=now,
        actor=actor,
        action="role.assign",
        target=employee_id,
        details={"manager": manager_id},
    )
    return True


class Accounts:
    """What a tenant's admins change about people over the API (each call its own
    transaction, audited)."""

    def __init__(self, *, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def assign(
        self, tenant_id: str, *, manager_id: str, employee_id: str, actor: str
    ) -> bool:
        """Let a manager see an employee's recordings; False when the pair existed already."""
        async for txn in self._db.attempts():
            async with txn as conn:
                created = await assign(
                    TenantScope(conn, tenant_id), manager_id=manager_id,
                    employee_id=employee_id, now=self._clock(), actor=actor,
                )
        return created
