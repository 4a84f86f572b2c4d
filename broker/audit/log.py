"""The audit log: append-only, per tenant, hash-chained.

Each entry's hash covers its content and the previous entry's hash, so removing, reordering
or editing an entry breaks the chain from there on (`verify_chain`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from broker.db.schema import audit_log, tenants
from broker.db.scope import TenantScope

GENESIS = "0" * 64


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    seq: int
    at: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


def entry_hash(
    *,
    tenant_id: str,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    target: str,
    details: str,
    prev_hash: str,
) -> str:
    material = json.dumps(
        [tenant_id, seq, at.isoformat(), actor, action, target, details, prev_hash],
        separators=(",", ":"),
    )
    return hashlib.sha256(material.encode()).hexdigest()


async def record(
    scope: TenantScope,
    *,
    at: datetime,
    actor: str,
    action: str,
    target: str,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one entry in the caller's transaction (it commits or rolls back with the change)."""
    if scope.conn.dialect.name == "postgresql":  # one writer per tenant chain at a time
        await scope.execute(
            select(tenants.c.id).where(tenants.c.id == scope.tenant_id).with_for_update()
        )
    last = (
        await scope.execute(
            select(audit_log.c.seq, audit_log.c.hash)
            .where(audit_log.c.tenant_id == scope.tenant_id)
            .order_by(audit_log.c.seq.desc())
            .limit(1)
        )
    ).first()
    seq, prev_hash = (last.seq + 1, last.hash) if last else (1, GENESIS)
    details_json = json.dumps(details or {}, sort_keys=True, separators=(",", ":"))
    at = at.replace(microsecond=(at.microsecond // 1000) * 1000)  # same on every backend
    digest = entry_hash(
        tenant_id=scope.tenant_id,
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        target=target,
        details=details_json,
        prev_hash=prev_hash,
    )
    await scope.insert(
        audit_log,
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        target=target,
        details=details_json,
        prev_hash=prev_hash,
        hash=digest,
    )


async def entries(scope: TenantScope) -> list[Entry]:
    rows = await scope.all(audit_log, order_by=[audit_log.c.seq])
    return [
        Entry(
            seq=r.seq,
            at=r.at,
            actor=r.actor,
            action=r.action,
            target=r.target,
            details=json.loads(r.details),
            prev_hash=r.prev_hash,
            hash=r.hash,
        )
        for r in rows
    ]


async def verify_chain(scope: TenantScope) -> list[str]:
    """Problems found in the tenant's chain; an empty list means it is intact."""
    problems: list[str] = []
    prev = GENESIS
    rows = await scope.all(audit_log, order_by=[audit_log.c.seq])
    for expected_seq, r in enumerate(rows, 1):
        if r.seq != expected_seq:
            problems.append(f"entry {expected_seq} is missing (found {r.seq})")
        digest = entry_hash(
            tenant_id=scope.tenant_id,
            seq=r.seq,
            at=r.at,
            actor=r.actor,
            action=r.action,
            target=r.target,
            details=r.details,
            prev_hash=r.prev_hash,
        )
        if r.prev_hash != prev or r.hash != digest:
            problems.append(f"entry {r.seq} does not match the chain")
        prev = r.hash
    return problems
