"""The tenant's people as its admins manage them: the list, roles, deactivation, 2FA resets,
and who watches whom.

A person's `state` (migration 0012) is "active"; "invited" (an admin invited them and they
have not set a password yet: their password hash verifies nothing, and their invitation is a
`mfa_challenges` row of kind "invite", see `broker.auth.invites`); or "deactivated" (they sign
in no more: their sessions, devices, enrollment codes and pending sign-ins ended when it
happened). Only active people sign in (`broker.auth.login`), and only their sessions verify
(`broker.auth.sessions`).

A tenant keeps an active admin: demoting or deactivating the last one is refused (409). The
count and the change are one step, since every change here takes the tenant's audit chain
lock first, which serializes the tenant's writers on both databases (README's lock order).

Every change is audited; a call that changes nothing (the same role again, deactivating a
deactivated person) writes nothing and answers the person as they are.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import Row, delete, or_, select

from broker.accounts.service import check_name, check_role, pair_of
from broker.audit import log as audit
from broker.clock import Clock
from broker.db import notify
from broker.db.database import Database
from broker.db.notify import Note, Topic
from broker.db.schema import (
    device_refresh_tokens,
    devices,
    enrollment_codes,
    manager_assignments,
    mfa_challenges,
    recovery_codes,
    user_sessions,
    users,
)
from broker.db.scope import TenantScope
from broker.errors import Conflict, NotFound
from broker.identity import Role
from shared.wire import format_timestamp


class PersonState(StrEnum):
    ACTIVE = "active"
    INVITED = "invited"
    DEACTIVATED = "deactivated"


T = TypeVar("T")
# A change made in one transaction, at one instant (`People._change` runs it).
Change = Callable[[TenantScope, datetime], Awaitable[T]]

INVITE = "invite"  # the kind of a `mfa_challenges` row that is an invitation
# An invited person's password hash: not an Argon2 hash, so no password verifies against it.
NO_PASSWORD = "!invited"  # noqa: S105 (no password: a value nothing matches)


def _time(value: datetime | None) -> str | None:
    return format_timestamp(value) if value is not None else None


def _ref(row: Row[Any]) -> dict[str, Any]:
    return {
        "user_id": row.id, "email": row.email, "display_name": row.display_name,
        "state": row.state,
    }


def _describe(
    row: Row[Any], managers: list[dict[str, Any]], employees: list[dict[str, Any]]
) -> dict[str, Any]:
    """A person as the admin's list and API show them (`shared.api.Person`)."""
    return {
        "user_id": row.id,
        "email": row.email,
        "display_name": row.display_name,
        "role": row.role,
        "state": row.state,
        "created_at": _time(row.created_at),
        "totp_enrolled_at": _time(row.totp_enrolled_at),
        "mfa_reset_pending": row.mfa_reset_at is not None,
        "mfa_reset_at": _time(row.mfa_reset_at),
        "last_sign_in_at": _time(row.last_sign_in_at),
        "managers": managers,
        "employees": employees,
    }


async def _described(scope: TenantScope, rows: list[Row[Any]]) -> list[dict[str, Any]]:
    """`rows` described, each with the managers who watch them and the employees they watch."""
    ids = [r.id for r in rows]
    pairs = await scope.all(
        manager_assignments,
        or_(manager_assignments.c.manager_id.in_(ids), manager_assignments.c.employee_id.in_(ids)),
    )
    named = {r.id: r for r in rows}
    missing = {p.manager_id for p in pairs} | {p.employee_id for p in pairs}
    missing -= named.keys()
    if missing:
        named.update({r.id: r for r in await scope.all(users, users.c.id.in_(missing))})
    managers: dict[str, list[Row[Any]]] = defaultdict(list)
    employees: dict[str, list[Row[Any]]] = defaultdict(list)
    for pair in pairs:
        managers[pair.employee_id].append(named[pair.manager_id])
        employees[pair.manager_id].append(named[pair.employee_id])
    return [
        _describe(r, _refs(managers[r.id]), _refs(employees[r.id])) for r in rows
    ]


def _refs(rows: Iterable[Row[Any]]) -> list[dict[str, Any]]:
    return [_ref(r) for r in sorted(rows, key=lambda r: r.email)]


async def person(scope: TenantScope, user_id: str) -> dict[str, Any]:
    return (await _described(scope, [await _require(scope, user_id)]))[0]


async def _require(scope: TenantScope, user_id: str) -> Row[Any]:
    row = await scope.one(users, users.c.id == user_id)
    if row is None:
        raise NotFound("no such person in this tenant")
    return row


async def _keep_an_admin(scope: TenantScope, row: Row[Any], change: str) -> None:
    """Refuse to `change` the tenant's last active admin."""
    if row.role != Role.ADMIN or row.state != PersonState.ACTIVE:
        return
    others = await scope.count(
        users, users.c.role == Role.ADMIN, users.c.state == PersonState.ACTIVE,
        users.c.id != row.id,
    )
    if others == 0:
        raise Conflict(
            f"{row.email} is the last active admin of this organisation and cannot be "
            f"{change}: make someone else an admin first"
        )


async def end_sessions(scope: TenantScope, user_id: str, now: datetime) -> int:
    """Every session of the person ends at once (their session version moves on, so no access
    token issued before verifies, nor their known-device cookie); how many were live."""
    await scope.update(users, users.c.id == user_id, session_version=users.c.session_version + 1)
    await notify.publish(scope.conn, Note(Topic.PERSON_ENDED, scope.tenant_id, user_id))
    return await scope.update(
        user_sessions, user_sessions.c.user_id == user_id, user_sessions.c.revoked_at.is_(None),
        revoked_at=now,
    )


async def _end_pending(scope: TenantScope, user_id: str, now: datetime) -> None:
    """Pending sign-ins (the password step done, the code not yet) and invitations end."""
    await scope.update(
        mfa_challenges, mfa_challenges.c.user_id == user_id, mfa_challenges.c.used_at.is_(None),
        used_at=now,
    )


async def _revoke_devices(scope: TenantScope, user_id: str, now: datetime) -> int:
    """The person's devices and their refresh tokens (the device row before its tokens, as
    `DeviceAuth.revoke`), and their enrollment codes not yet used; how many devices."""
    theirs = select(devices.c.id).where(
        devices.c.tenant_id == scope.tenant_id, devices.c.user_id == user_id
    )
    revoked = await scope.update(
        devices, devices.c.user_id == user_id, devices.c.revoked_at.is_(None), revoked_at=now
    )
    await scope.update(
        device_refresh_tokens, device_refresh_tokens.c.device_id.in_(theirs),
        device_refresh_tokens.c.revoked_at.is_(None), revoked_at=now,
    )
    await scope.update(
        enrollment_codes, enrollment_codes.c.user_id == user_id,
        enrollment_codes.c.used_at.is_(None), enrollment_codes.c.revoked_at.is_(None),
        revoked_at=now,
    )
    return revoked


async def _unassign_all(scope: TenantScope, row: Row[Any], role: str) -> int:
    """The assignments that no longer fit the person's new `role`; how many."""
    removed = 0
    for column, old in (
        (manager_assignments.c.manager_id, Role.MANAGER),
        (manager_assignments.c.employee_id, Role.EMPLOYEE),
    ):
        if row.role == old and role != old:
            result = await scope.execute(
                delete(manager_assignments).where(
                    manager_assignments.c.tenant_id == scope.tenant_id, column == row.id
                )
            )
            removed += int(result.rowcount)
    return removed


async def set_role(
    scope: TenantScope, user_id: str, role: str, *, now: datetime, actor: str
) -> dict[str, Any]:
    """A person's new role; assignments that no longer fit it (a manager's employees, an
    employee's managers) are removed with it."""
    role = check_role(role)
    await audit.lock_chain(scope)  # before the first write (README's lock order)
    row = await _require(scope, user_id)
    if row.role != role:
        await _keep_an_admin(scope, row, "demoted")
        removed = await _unassign_all(scope, row, role)
        await scope.update(users, users.c.id == user_id, role=role)
        await audit.record(
            scope, at=now, actor=actor, action="user.role_set", target=user_id,
            details={"from": row.role, "to": role, "assignments_removed": removed},
        )
    return await person(scope, user_id)


async def set_name(
    scope: TenantScope, user_id: str, name: str | None, *, now: datetime, actor: str
) -> dict[str, Any]:
    """The name the person goes by (None or blank: none, the email alone)."""
    name = check_name(name)
    await audit.lock_chain(scope)  # before the first write (README's lock order)
    row = await _require(scope, user_id)
    if row.display_name != name:
        await scope.update(users, users.c.id == user_id, display_name=name)
        await audit.record(
            scope, at=now, actor=actor, action="user.name_set", target=user_id,
            details={"from": row.display_name, "to": name},
        )
    return await person(scope, user_id)


async def deactivate(
    scope: TenantScope, user_id: str, *, now: datetime, actor: str
) -> dict[str, Any]:
    """The person signs in no more; their sessions, devices (and the devices' refresh
    tokens), enrollment codes, invitation and pending sign-ins end at once."""
    await audit.lock_chain(scope)  # before the first write (README's lock order)
    row = await _require(scope, user_id)
    if row.state != PersonState.DEACTIVATED:
        await _keep_an_admin(scope, row, "deactivated")
        await scope.update(users, users.c.id == user_id, state=PersonState.DEACTIVATED)
        sessions = await end_sessions(scope, user_id, now)
        revoked = await _revoke_devices(scope, user_id, now)
        await _end_pending(scope, user_id, now)
        await audit.record(
            scope, at=now, actor=actor, action="user.deactivate", target=user_id,
            details={"sessions_ended": sessions, "devices_revoked": revoked},
        )
    return await person(scope, user_id)


async def reactivate(
    scope: TenantScope, user_id: str, *, now: datetime, actor: str
) -> dict[str, Any]:
    """A deactivated person may sign in again (with their password and 2FA as before; their
    devices stay revoked). One who never accepted their invitation is invited again: state
    "invited", and an admin sends them a new link."""
    await audit.lock_chain(scope)  # before the first write (README's lock order)
    row = await _require(scope, user_id)
    if row.state == PersonState.DEACTIVATED:
        state = PersonState.INVITED if row.password_hash == NO_PASSWORD else PersonState.ACTIVE
        await scope.update(users, users.c.id == user_id, state=state)
        await audit.record(
            scope, at=now, actor=actor, action="user.reactivate", target=user_id,
            details={"state": state.value},
        )
    return await person(scope, user_id)


async def reset_mfa(
    scope: TenantScope, user_id: str, *, now: datetime, actor: str
) -> dict[str, Any]:
    """The person's TOTP secret and recovery codes are gone and their sessions end; at their
    next sign-in they enrol again (and are told their admin reset it: `mfa_reset_at`, cleared
    by that enrolment)."""
    await audit.lock_chain(scope)  # before the first write (README's lock order)
    row = await _require(scope, user_id)
    if row.state == PersonState.INVITED:
        raise Conflict(
            f"{row.email} has not accepted the invitation yet: there is no two-factor "
            "authentication to reset"
        )
    await scope.update(
        users, users.c.id == user_id, totp_sealed=None, totp_kek_version=None,
        totp_last_step=None, totp_enrolled_at=None, mfa_reset_at=now,
    )
    await scope.update(
        recovery_codes, recovery_codes.c.user_id == user_id, recovery_codes.c.used_at.is_(None),
        used_at=now,
    )
    sessions = await end_sessions(scope, user_id, now)
    await _end_pending(scope, user_id, now)
    await audit.record(
        scope, at=now, actor=actor, action="user.mfa_reset", target=user_id,
        details={"sessions_ended": sessions},
    )
    return await person(scope, user_id)


async def unassign(
    scope: TenantScope, *, manager_id: str, employee_id: str, now: datetime, actor: str
) -> bool:
    """The manager no longer sees the employee's recordings; False when they did not."""
    await audit.lock_chain(scope)  # before the first write (README's lock order)
    await pair_of(scope, manager_id, employee_id)
    result = await scope.execute(
        delete(manager_assignments).where(
            manager_assignments.c.tenant_id == scope.tenant_id,
            manager_assignments.c.manager_id == manager_id,
            manager_assignments.c.employee_id == employee_id,
        )
    )
    if not result.rowcount:
        return False
    await audit.record(
        scope, at=now, actor=actor, action="role.unassign", target=employee_id,
        details={"manager": manager_id},
    )
    return True


async def assignments(scope: TenantScope) -> list[dict[str, Any]]:
    """Every manager-employee pair of the tenant, by manager then employee."""
    named = {r.id: r for r in await scope.all(users)}
    pairs = [
        (named[p.manager_id], named[p.employee_id], p.created_at)
        for p in await scope.all(manager_assignments)
    ]
    return [
        {
            "manager_id": m.id, "manager_email": m.email, "manager_name": m.display_name,
            "employee_id": e.id, "employee_email": e.email, "employee_name": e.display_name,
            "created_at": _time(at),
        }
        for m, e, at in sorted(pairs, key=lambda p: (p[0].email, p[1].email))
    ]


class People:
    """The admins' changes to people over the API and the pages; each call its own
    transaction (reads: one read transaction)."""

    def __init__(self, *, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def list_people(self, tenant_id: str) -> list[dict[str, Any]]:
        async with self._db.transaction() as conn:
            scope = TenantScope(conn, tenant_id)
            return await _described(scope, await scope.all(users, order_by=[users.c.email]))

    async def get(self, tenant_id: str, user_id: str) -> dict[str, Any]:
        async with self._db.transaction() as conn:
            return await person(TenantScope(conn, tenant_id), user_id)

    async def assignments(self, tenant_id: str) -> list[dict[str, Any]]:
        async with self._db.transaction() as conn:
            return await assignments(TenantScope(conn, tenant_id))

    async def _change(self, tenant_id: str, change: Change[T]) -> T:
        async for txn in self._db.attempts():
            async with txn as conn:
                result = await change(TenantScope(conn, tenant_id), self._clock())
        return result

    async def set_role(
        self, tenant_id: str, user_id: str, role: str, *, actor: str
    ) -> dict[str, Any]:
        return await self._change(
            tenant_id, lambda scope, now: set_role(scope, user_id, role, now=now, actor=actor)
        )

    async def set_name(
        self, tenant_id: str, user_id: str, name: str | None, *, actor: str
    ) -> dict[str, Any]:
        return await self._change(
            tenant_id, lambda scope, now: set_name(scope, user_id, name, now=now, actor=actor)
        )

    async def deactivate(self, tenant_id: str, user_id: str, *, actor: str) -> dict[str, Any]:
        return await self._change(
            tenant_id, lambda scope, now: deactivate(scope, user_id, now=now, actor=actor)
        )

    async def reactivate(self, tenant_id: str, user_id: str, *, actor: str) -> dict[str, Any]:
        return await self._change(
            tenant_id, lambda scope, now: reactivate(scope, user_id, now=now, actor=actor)
        )

    async def reset_mfa(self, tenant_id: str, user_id: str, *, actor: str) -> dict[str, Any]:
        return await self._change(
            tenant_id, lambda scope, now: reset_mfa(scope, user_id, now=now, actor=actor)
        )

    async def unassign(
        self, tenant_id: str, *, manager_id: str, employee_id: str, actor: str
    ) -> bool:
        return await self._change(
            tenant_id,
            lambda scope, now: unassign(
                scope, manager_id=manager_id, employee_id=employee_id, now=now, actor=actor
            ),
        )
