"""Enrollment codes for fleet installs: one code enrolls up to `max_uses` devices of one
person (1: one-time), until it expires or an admin revokes it.

The code itself is shown once, when it is made; the broker keeps only its keyed hash, so a
listing shows the person, label, uses and dates, never the code. Each enrollment claims one
use with a single conditional UPDATE (uses below max_uses, not revoked, not expired, its
person not deactivated), so N enrollments racing for an N-use code make exactly N devices;
the last use sets `used_at`. The claim runs in the enrollment's own transaction: when the
device cannot be made (the person's device cap), the use is not spent.
"""

from __future__ import annotations

import shlex
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Row, Select, case, select, update

from broker.db.schema import enrollment_codes, users
from broker.db.scope import TenantScope
from broker.errors import InvalidInput, NotFound
from shared.api import CODE_TTL_MAX, CODE_TTL_MIN, MAX_CODE_LABEL, MAX_CODE_USES
from shared.wire import format_timestamp

AGENT = "bucketreel-agent"  # the agent's program (agent.cli.enroll's `enroll` command)
State = Literal["active", "used_up", "expired", "revoked"]
LIST_LIMIT = 500  # newest first; housekeeping deletes codes once they expired


def enroll_command(broker_url: str, code: str) -> str:
    """The command that enrolls a workstation with `code` (quoted for a POSIX shell where
    needed: a code is URL-safe text, and so is a broker URL with a host name, so the command
    runs as printed in PowerShell and cmd too)."""
    return f"{AGENT} enroll --broker {shlex.quote(broker_url)} --code {shlex.quote(code)}"


def check(*, max_uses: int, ttl: int, label: str | None) -> None:
    """The limits the API's model states, for callers that did not come through it (CLI)."""
    if not 1 <= max_uses <= MAX_CODE_USES:
        raise InvalidInput(f"max_uses must be between 1 and {MAX_CODE_USES}")
    if not CODE_TTL_MIN <= ttl <= CODE_TTL_MAX:
        raise InvalidInput(
            f"expires_in must be between {CODE_TTL_MIN} and {CODE_TTL_MAX} seconds"
        )
    if label is not None and len(label) > MAX_CODE_LABEL:
        raise InvalidInput(f"label must be at most {MAX_CODE_LABEL} characters")


def state_of(row: Row[Any], now: datetime) -> State:
    if row.revoked_at is not None:
        return "revoked"
    if row.uses >= row.max_uses:
        return "used_up"
    if row.expires_at <= now:
        return "expired"
    return "active"


def describe(row: Row[Any], email: str, now: datetime) -> dict[str, Any]:
    """A code as an admin sees it (never the code: only its hash is kept)."""
    return {
        "code_id": row.id,
        "user_id": row.user_id,
        "email": email,
        "label": row.label,
        "uses": row.uses,
        "max_uses": row.max_uses,
        "created_at": format_timestamp(row.created_at),
        "expires_at": format_timestamp(row.expires_at),
        "used_at": format_timestamp(row.used_at) if row.used_at else None,
        "revoked_at": format_timestamp(row.revoked_at) if row.revoked_at else None,
        "state": state_of(row, now),
    }


def _with_email(scope: TenantScope, *criteria: ColumnElement[bool]) -> Select[Any]:
    """The tenant's codes matching `criteria`, each with its person's email."""
    person = (users.c.id == enrollment_codes.c.user_id) & (
        users.c.tenant_id == enrollment_codes.c.tenant_id
    )
    return (
        select(enrollment_codes, users.c.email)
        .join(users, person)
        .where(enrollment_codes.c.tenant_id == scope.tenant_id, *criteria)
    )


async def listed(scope: TenantScope, now: datetime) -> list[dict[str, Any]]:
    """The tenant's codes, newest first."""
    query = _with_email(scope).order_by(
        enrollment_codes.c.created_at.desc(), enrollment_codes.c.id
    ).limit(LIST_LIMIT)
    return [describe(r, r.email, now) for r in (await scope.execute(query)).all()]


async def one(scope: TenantScope, code_id: str, now: datetime) -> dict[str, Any]:
    """One code of the tenant (NotFound: none by that id in this tenant)."""
    query = _with_email(scope, enrollment_codes.c.id == code_id)
    row = (await scope.execute(query)).first()
    if row is None:
        raise NotFound("no such enrollment code")
    return describe(row, row.email, now)


async def claim(scope: TenantScope, code_hash: str, now: datetime) -> Row[Any] | None:
    """Spend one use of the code, if it has one left: its row (id, user_id), else None."""
    person_active = select(users.c.id).where(
        users.c.tenant_id == scope.tenant_id, users.c.state != "deactivated"
    )
    spent = enrollment_codes.c.uses + 1
    claimed = await scope.execute(
        update(enrollment_codes)
        .where(
            enrollment_codes.c.tenant_id == scope.tenant_id,
            enrollment_codes.c.code_hash == code_hash,
            enrollment_codes.c.uses < enrollment_codes.c.max_uses,
            enrollment_codes.c.revoked_at.is_(None),
            enrollment_codes.c.expires_at > now,
            enrollment_codes.c.user_id.in_(person_active),
        )
        .values(
            uses=spent,
            used_at=case(
                (spent >= enrollment_codes.c.max_uses, now), else_=enrollment_codes.c.used_at
            ),
        )
        .returning(enrollment_codes.c.id, enrollment_codes.c.user_id)
    )
    return claimed.first()


async def revoke(scope: TenantScope, code_id: str, now: datetime) -> dict[str, Any]:
    """Withdraw the code (one revoked already stays as it was): `one`'s view of it after."""
    await one(scope, code_id, now)
    await scope.update(
        enrollment_codes, enrollment_codes.c.id == code_id,
        enrollment_codes.c.revoked_at.is_(None), revoked_at=now,
    )
    return await one(scope, code_id, now)
