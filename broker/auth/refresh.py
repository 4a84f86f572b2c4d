"""Rotating refresh tokens in families, with reuse detection: one helper for devices and people.

A refresh token works once: using it claims its row and mints the next token of its family
(a device's chain, or a person's session). Presenting a token that is still live but was
already used means a copy exists somewhere else: the caller ends the whole family and
audits `<kind>.refresh_reuse` (theft detection). Only a hash of each token is stored.

`broker.auth.devices` and `broker.auth.sessions` both go through `find`, `use`, `mint` and
`reused`; what differs between them is only what "live" means and what ends a family.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import ColumnElement, Row, Table, select
from sqlalchemy.ext.asyncio import AsyncConnection

from broker.audit import log as audit
from broker.auth.secrets import new_token, token_hash
from broker.db.scope import TenantScope
from broker.errors import Unauthenticated
from broker.settings import Secret
from shared.errors import ErrorCode


class Use(Enum):
    FRESH = "fresh"  # claimed just now: mint the family's next token
    REPLAYED = "replayed"  # live but used before: a copy exists, end the family
    DEAD = "dead"  # expired, revoked, or its family has ended: refuse, nothing more


@dataclass(frozen=True, slots=True)
class Presented:
    """A presented token's row, and the scope of the tenant that row names."""

    scope: TenantScope
    row: Row[Any]


def not_valid() -> Unauthenticated:
    return Unauthenticated("refresh token is not valid", code=ErrorCode.INVALID_TOKEN)


async def find(conn: AsyncConnection, tokens: Table, digest: str) -> Presented:
    """The row of the token whose hash is `digest`. The token names its tenant: this is the
    one lookup made before a tenant is known, by an unguessable value."""
    row = (await conn.execute(select(tokens).where(tokens.c.token_hash == digest))).first()
    if row is None:
        raise not_valid()
    return Presented(TenantScope(conn, row.tenant_id), row)


async def use(
    presented: Presented,
    tokens: Table,
    now: datetime,
    *,
    live: bool,
    claim_if: tuple[ColumnElement[bool], ...] = (),
) -> Use:
    """Claim a live token (once: the row's `used_at` is set only if it was empty, and only
    while `claim_if` holds); a live token that cannot be claimed was used before."""
    if not live:
        return Use.DEAD
    claimed = await presented.scope.update(
        tokens,
        tokens.c.id == presented.row.id,
        tokens.c.used_at.is_(None),
        *claim_if,
        used_at=now,
    )
    return Use.FRESH if claimed == 1 else Use.REPLAYED


async def mint(
    scope: TenantScope,
    tokens: Table,
    *,
    key: Secret,
    purpose: str,
    prefix: str,
    now: datetime,
    expires_at: datetime,
    **family: Any,
) -> str:
    """A new token of a family (`family`: the columns that name it), stored as its hash."""
    token = new_token(prefix, 32)
    await scope.insert(
        tokens,
        id=str(uuid.uuid4()),
        token_hash=token_hash(key, purpose, token),
        created_at=now,
        expires_at=expires_at,
        **family,
    )
    return token


async def reused(
    scope: TenantScope,
    now: datetime,
    *,
    kind: str,
    actor: str,
    target: str,
    details: dict[str, Any],
) -> None:
    """Audit a replayed token (the caller has ended its family in the same transaction)."""
    await audit.record(
        scope, at=now, actor=actor, action=f"{kind}.refresh_reuse", target=target,
        details=details,
    )
