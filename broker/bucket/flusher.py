"""The outbox flusher: writes the queued records to the tenants' buckets, write-once.

Runs as a task for the app's lifetime (`broker.app`), in every replica. Each round:

1. every `anchor_interval` seconds (10 minutes) and at start, for each tenant whose audit
   chain grew since its last anchor, queue an anchor of the chain's head (besides those a
   view URL queues at once);
2. deliver the due rows: in a short transaction, fix the row's object key and bytes (built
   from the database and signed with the broker key, `broker.bucket.documents`) the first
   time; then, with no transaction open, make sure the broker's key record is in that bucket
   and `PutObject` with `If-None-Match: *` (`BucketClient.put_once`, under its deadline);
   then mark the row delivered. A 412 (the object exists) counts as delivered: a retry, or
   another replica that got there first, wrote the same record. A failure (the bucket
   unreachable, refused, no storage configured) is noted on the row and tried again after
   a doubling pause (`RETRY_FIRST` up to `RETRY_MAX`); a manifest still waiting for its
   segments is looked at again the same way. Nothing queued is ever dropped. A tenant's
   rows go one after another, so the flusher holds at most one of the tenant's storage
   slots (`broker.storage.io`): a stalled bucket never starves its people's grants.
   Anchors of a tenant due together are written once, for the newest head: its chain hash
   covers every entry before it (the older rows are marked delivered, "covered").

Between rounds it waits `POLL` seconds, or less when woken (`outbox.Wake`). With each anchor
round, rows delivered more than `KEEP` ago are deleted, so the table does not grow for ever:
a record deleted from the outbox stays in the bucket, and should one be queued again (an
anchor of a chain that did not grow for `KEEP`), the bucket refuses the second write (412)
and it counts as delivered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, cast, delete, func, select, update
from sqlalchemy.exc import SQLAlchemyError

from broker.bucket import documents, outbox
from broker.clock import Clock
from broker.db.database import Database
from broker.db.schema import audit_log, bucket_outbox, storage_configs
from broker.db.scope import TenantScope
from broker.errors import BrokerError, stop_if_cancelled
from broker.settings import MasterKeys
from broker.storage import config as storage_config
from broker.storage.config import StorageConfig
from broker.storage.s3 import BucketClient, BucketClients
from shared.bucket import keys as bucket_keys
from shared.bucket.records import BrokerSigner, encode
from shared.custody import timestamp_ms

log = logging.getLogger(__name__)

POLL = 5.0
ANCHOR_INTERVAL = 600.0
MANIFEST_GRACE = timedelta(hours=24)
RETRY_FIRST, RETRY_MAX = 2.0, 300.0
KEEP = timedelta(days=30)
BATCH = 50
LANES = 4  # tenants delivered to at once (each tenant's rows one after another)


@dataclass(frozen=True, slots=True)
class Prepared:
    config: StorageConfig
    key: str
    body: bytes


class Flusher:
    def __init__(
        self, *, db: Database, keys: MasterKeys, buckets: BucketClients, signer: BrokerSigner,
        clock: Clock, wake: outbox.Wake | None = None, anchor_interval: float = ANCHOR_INTERVAL,
        manifest_grace: timedelta = MANIFEST_GRACE,
    ) -> None:
        self._db, self._keys, self._buckets, self._signer = db, keys, buckets, signer
        self._clock = clock
        self._wake = wake or outbox.Wake()
        self._anchor_interval = anchor_interval
        self._grace = manifest_grace
        self._published: set[tuple[str, str, str | None, str]] = set()

    async def run_forever(self) -> None:
        next_anchor = 0.0
        while True:
            try:
                if time.monotonic() >= next_anchor:
                    next_anchor = time.monotonic() + self._anchor_interval
                    await self.prune(self._clock())
                    await self.anchor_round()
                await self.deliver_due()
            except (SQLAlchemyError, OSError) as exc:
                stop_if_cancelled()
                log.warning(
                    "bucket outbox: the round failed (%s); trying again", type(exc).__name__
                )
            await self._wake.sleep(POLL)

    async def prune(self, now: datetime) -> int:
        """Delete rows delivered before `now - KEEP`; returns how many."""
        async with self._db.transaction() as conn:  # spans tenants: declares none
            result = await conn.execute(
                delete(bucket_outbox).where(bucket_outbox.c.delivered_at < now - KEEP)
            )
        return int(result.rowcount)

    async def anchor_round(self) -> int:
        """Queue an anchor of every tenant's chain head that grew since its last anchor."""
        async with self._db.transaction() as conn:  # spans tenants: declares none
            heads = (await conn.execute(
                select(audit_log.c.tenant_id, func.max(audit_log.c.seq))
                .join(storage_configs, storage_configs.c.tenant_id == audit_log.c.tenant_id)
                .group_by(audit_log.c.tenant_id)
            )).all()
            anchored: dict[str, int] = {
                tenant_id: seq for tenant_id, seq in (await conn.execute(
                    select(
                        bucket_outbox.c.tenant_id, func.max(cast(bucket_outbox.c.ref, Integer))
                    )
                    .where(bucket_outbox.c.kind == outbox.ANCHOR)
                    .group_by(bucket_outbox.c.tenant_id)
                )).all()
            }
        grown = [(t, seq) for t, seq in heads if seq > (anchored.get(t) or 0)]
        now = self._clock()
        for tenant_id, seq in grown:
            async for txn in self._db.attempts():
                async with txn as conn:
                    await outbox.enqueue(TenantScope(conn, tenant_id), outbox.ANCHOR, str(seq), now)
        return len(grown)

    async def deliver_due(self) -> int:
        """Deliver every row due now; returns how many were written (or found written)."""
        now = self._clock()
        async with self._db.transaction() as conn:  # spans tenants: declares none
            due = (await conn.execute(
                select(
                    bucket_outbox.c.id, bucket_outbox.c.tenant_id, bucket_outbox.c.kind,
                    bucket_outbox.c.ref,
                )
                # a tenant without storage yet has nowhere to write: its rows wait untouched
                .join(storage_configs, storage_configs.c.tenant_id == bucket_outbox.c.tenant_id)
                .where(
                    bucket_outbox.c.delivered_at.is_(None),
                    bucket_outbox.c.next_attempt_at <= now,
                )
                .order_by(bucket_outbox.c.next_attempt_at)
                .limit(BATCH)
            )).all()
        by_tenant: dict[str, list[str]] = {}
        newest_anchor: dict[str, tuple[int, str]] = {}
        covered: dict[str, list[str]] = {}
        for row in due:
            if row.kind == outbox.ANCHOR:
                seq, best = int(row.ref), newest_anchor.get(row.tenant_id)
                if best is not None and best[0] >= seq:
                    covered.setdefault(row.tenant_id, []).append(row.id)
                    continue
                if best is not None:
                    covered.setdefault(row.tenant_id, []).append(best[1])
                newest_anchor[row.tenant_id] = (seq, row.id)
            by_tenant.setdefault(row.tenant_id, []).append(row.id)
        for tenant_id, row_ids in covered.items():
            await self._covered(tenant_id, row_ids, newest_anchor[tenant_id][0])
            by_tenant[tenant_id] = [r for r in by_tenant[tenant_id] if r not in row_ids]
        lanes = asyncio.Semaphore(LANES)

        async def tenant_rows(tenant_id: str, row_ids: list[str]) -> int:
            """One row at a time per tenant (one of its storage slots, never more: its
            people's grants and views keep theirs); the rest wait for the next round once
            one fails (the bucket is likely down for all of them)."""
            written = 0
            async with lanes:
                for row_id in row_ids:
                    outcome = await self._deliver(row_id, tenant_id)
                    if outcome is None:
                        break
                    written += outcome
            return written

        done = await asyncio.gather(
            *(tenant_rows(t, ids) for t, ids in by_tenant.items()), return_exceptions=True
        )
        for outcome in done:
            if isinstance(outcome, SQLAlchemyError | OSError):  # tried again next round
                log.warning("bucket outbox: a delivery failed (%s)", type(outcome).__name__)
            elif isinstance(outcome, BaseException):
                raise outcome
        return sum(outcome for outcome in done if isinstance(outcome, int))

    async def _covered(self, tenant_id: str, row_ids: list[str], seq: int) -> None:
        """Anchors of older heads due with a newer one: the newer anchor's chain hash covers
        every entry before it, so those are done without a write of their own."""
        async for txn in self._db.attempts():
            async with txn as conn:
                await TenantScope(conn, tenant_id).update(
                    bucket_outbox, bucket_outbox.c.id.in_(row_ids),
                    delivered_at=self._clock(), last_error=f"covered by the anchor of {seq}",
                )

    async def _deliver(self, row_id: str, tenant_id: str) -> bool | None:
        """True: written (or found written); False: nothing to write yet; None: failed."""
        try:
            prepared = await self._prepare(row_id, tenant_id)
            if prepared is None:
                return False
            bucket = await self._buckets.client(prepared.config)
            await self._publish_key(bucket)
            written = await self._buckets.put_once(bucket, prepared.key, prepared.body)
        except documents.NotReady as exc:
            await self._later(row_id, tenant_id, str(exc), error=False)
            return False
        except BrokerError as exc:
            log.info("bucket outbox: tenant %s: %s", tenant_id, exc.message)
            await self._later(row_id, tenant_id, exc.message, error=True)
            return None
        log.info(
            "bucket outbox: tenant %s: %s %s", tenant_id,
            "wrote" if written else "found already written", prepared.key,
        )
        async for txn in self._db.attempts():
            async with txn as conn:
                await TenantScope(conn, tenant_id).update(
                    bucket_outbox, bucket_outbox.c.id == row_id, delivered_at=self._clock(),
                    last_error=None,
                )
        return True

    async def _prepare(self, row_id: str, tenant_id: str) -> Prepared | None:
        """The row's storage, key and bytes; built and fixed on the row the first time (a
        racing replica that fixed them first wins, and both write those same bytes)."""
        now = self._clock()
        async for txn in self._db.attempts():
            async with txn as conn:
                scope = TenantScope(conn, tenant_id)
                row = await scope.one(bucket_outbox, bucket_outbox.c.id == row_id)
                if row is None or row.delivered_at is not None:
                    return None
                config = await storage_config.load(scope, self._keys)
                if row.body is None:
                    built = await self._build(scope, config.prefix, row.kind, row.ref, now)
                    if built is None:  # what it was about is gone: nothing to write
                        await scope.update(
                            bucket_outbox, bucket_outbox.c.id == row_id, delivered_at=now,
                            last_error="nothing to write",
                        )
                        return None
                    await scope.execute(
                        update(bucket_outbox)
                        .where(bucket_outbox.c.id == row_id, bucket_outbox.c.body.is_(None))
                        .values(object_key=built[0], body=built[1].decode("ascii"))
                    )
                    row = await scope.one(bucket_outbox, bucket_outbox.c.id == row_id)
                    if row is None:
                        return None
                prepared = Prepared(config, row.object_key, row.body.encode("ascii"))
        return prepared

    async def _build(
        self, scope: TenantScope, prefix: str, kind: str, ref: str, now: datetime
    ) -> tuple[str, bytes] | None:
        found: Any
        if kind == outbox.DEVICE:
            found = await documents.device(scope, prefix, ref)
        elif kind == outbox.MANIFEST:
            found = await documents.manifest(scope, prefix, ref, now=now, grace=self._grace)
        elif kind == outbox.ANCHOR:
            found = await documents.anchor(scope, prefix, ref)
        else:
            return None
        if found is None:
            return None
        key, doc = found
        return key, encode(self._signer.sign(doc))

    async def _publish_key(self, bucket: BucketClient) -> None:
        """The broker's public key record, once per bucket and prefix in this process."""
        config = bucket.config
        where = (config.bucket, config.prefix, config.endpoint_url, self._signer.key_id)
        if where in self._published:
            return
        record = self._signer.record(timestamp_ms(self._clock()))
        key = bucket_keys.broker_key_key(config.prefix, self._signer.key_id)
        await self._buckets.put_once(bucket, key, encode(record))
        self._published.add(where)

    async def _later(self, row_id: str, tenant_id: str, why: str, *, error: bool) -> None:
        async for txn in self._db.attempts():
            async with txn as conn:
                scope = TenantScope(conn, tenant_id)
                row = await scope.one(bucket_outbox, bucket_outbox.c.id == row_id)
                if row is None:
                    return
                pause = min(RETRY_MAX, RETRY_FIRST * 2 ** min(row.attempts, 16))
                await scope.update(
                    bucket_outbox, bucket_outbox.c.id == row_id, attempts=row.attempts + 1,
                    next_attempt_at=self._clock() + timedelta(seconds=pause),
                    last_error=why[:300] if error else None,
                )
