"""The storage watch: every `storage_check_interval` seconds, is each tenant's access still good?

Revocation (DESIGN G6) is the customer's act in their own cloud: nothing tells the broker. An
agent's failed upload makes the broker look (`StorageAccess.access_works`), but a tenant whose
agents are idle would show "ok" for hours after its key was deactivated. So each broker process
asks, per tenant whose access works and whose self-check left a canary object, one HeadObject
of that canary per interval: 403 marks the storage `access_revoked` (audited), which every
admin page then shows. A bucket that does not answer changes nothing (that is an outage, not a
revocation). Revoked tenants are not asked again: new credentials (which pass the self-check)
or a self-check that can write again bring the state back.

Each probe runs on the storage pool under its deadlines (`broker.storage.io`), at most
`CONCURRENT` at once, so one tenant's stalled endpoint delays no other's probe by more than
its deadline and takes at most one of that tenant's storage slots. N replicas probe N times;
at the default 30 s that is some 2 900 HeadObject requests a day per tenant and replica.
"""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from broker.db.database import Database
from broker.db.schema import storage_access, storage_configs
from broker.errors import BrokerError, stop_if_cancelled
from broker.storage.s3 import CLIENT_DEADLINE, HEAD_DEADLINE
from broker.storage.service import OK, StorageAccess

log = logging.getLogger(__name__)

CONCURRENT = 4  # probes under way at once, across tenants
# A probe makes a client (DNS, STS for a role) and sends one HeadObject, each on the storage
# pool under its own deadline; this bounds the whole probe, waits for slots included.
PROBE_DEADLINE = CLIENT_DEADLINE + HEAD_DEADLINE + 5.0


async def watched_tenants(db: Database) -> list[str]:
    """The tenants to probe: storage saved, access working, a canary to ask about. The only
    query here that spans tenants (it declares none, like housekeeping's sweep)."""
    query = (
        select(storage_access.c.tenant_id)
        .join(storage_configs, storage_configs.c.tenant_id == storage_access.c.tenant_id)
        .where(storage_access.c.state == OK, storage_access.c.canary_key.is_not(None))
        .order_by(storage_access.c.tenant_id)
    )
    async with db.transaction() as conn:
        return [row.tenant_id for row in await conn.execute(query)]


async def _probe(storage: StorageAccess, tenant_id: str, slots: asyncio.Semaphore) -> None:
    async with slots:
        try:
            async with asyncio.timeout(PROBE_DEADLINE):
                await storage.watch(tenant_id)  # a revocation is logged and audited there
        except TimeoutError:
            log.info("storage watch: tenant %s: no answer within %.0f s", tenant_id,
                     PROBE_DEADLINE)
        except BrokerError as exc:  # the bucket did not answer, busy, not configured any more
            log.info("storage watch: tenant %s: %s", tenant_id, exc.message)
        except SQLAlchemyError as exc:
            log.warning("storage watch: tenant %s: database error %s", tenant_id,
                        type(exc).__name__)


async def check_all(db: Database, storage: StorageAccess) -> int:
    """One round: probe every watched tenant; returns how many were asked."""
    tenants = await watched_tenants(db)
    slots = asyncio.Semaphore(CONCURRENT)
    await asyncio.gather(*(_probe(storage, tenant_id, slots) for tenant_id in tenants))
    return len(tenants)


async def watch_forever(db: Database, storage: StorageAccess, *, interval: float) -> None:
    """A round every `interval` seconds (from the start of one to the next; a round that
    takes longer is followed at once), until cancelled (`broker.app` runs it)."""
    while True:
        started = time.monotonic()
        try:
            await check_all(db, storage)
        except (SQLAlchemyError, OSError) as exc:
            stop_if_cancelled()
            log.warning("storage watch: the round failed (%s); trying again in %.0f s",
                        type(exc).__name__, interval)
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))
