"""The outbox: records still to be written to the bucket, added in the event's transaction.

A device enrollment, a recording finished (or closed for a dead agent) and a view URL minted
each add one row (kind, ref) in the same transaction as the event and its audit entry, so
either both happen or neither. The flusher (`broker.bucket.flusher`) writes them later with
no transaction open. A (tenant, kind, ref) is queued once: adding it again does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from broker.db.database import before_commit
from broker.db.schema import audit_log, bucket_outbox
from broker.db.scope import TenantScope

DEVICE, MANIFEST, ANCHOR = "device", "manifest", "anchor"


async def enqueue(scope: TenantScope, kind: str, ref: str, now: datetime) -> None:
    """Queue the record `kind` of `ref` for the tenant, unless it is queued already."""
    dialect = postgresql if scope.conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(bucket_outbox).values(
        id=str(uuid.uuid4()), tenant_id=scope.tenant_id, kind=kind, ref=ref, created_at=now,
        next_attempt_at=now, attempts=0,
    ).on_conflict_do_nothing(index_elements=["tenant_id", "kind", "ref"])
    await scope.execute(statement)


async def enqueue_anchor(scope: TenantScope, now: datetime) -> None:
    """Queue an anchor of the tenant's audit chain as this transaction leaves it.

    The audit entries a transaction records are linked into the chain only just before it
    commits (`broker.audit.log.record`), so the head is read then, after them: call this
    after the transaction's `audit.record` (whose link is registered first, and so runs
    first)."""

    async def anchor(_conn: AsyncConnection) -> None:
        head = (await scope.execute(
            select(func.max(audit_log.c.seq)).where(audit_log.c.tenant_id == scope.tenant_id)
        )).scalar()
        if head is not None:
            await enqueue(scope, ANCHOR, str(head), now)

    before_commit(scope.conn, anchor)


class Wake:
    """Tells this process's flusher to look at the outbox now (after a view URL: its anchor
    is written right away, not at the next poll)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    async def sleep(self, seconds: float) -> None:
        """Sleep `seconds`, or until woken."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._event.wait()
        self._event.clear()
