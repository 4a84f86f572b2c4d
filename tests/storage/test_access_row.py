"""A tenant's storage-access row (its STS external ID, its revocation state) is made on first
use; two replicas making it at once must agree on one row, not fail with a duplicate key."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime
from typing import Any

from broker import admin
from broker.db.database import Database
from broker.db.scope import TenantScope
from broker.storage.service import access_row
from tests.support.api import Operator
from tests.support.broker import BrokerProcess


def test_two_first_uses_at_once_make_one_row_and_agree_on_it(broker: BrokerProcess) -> None:
    tenant_id = Operator(broker).run(admin.create_tenant, name=f"race-{secrets.token_hex(4)}")[
        "tenant_id"]
    now = datetime.now(UTC)

    async def race() -> tuple[Any, Any]:
        db = Database.from_url(broker.database_url)
        try:
            first_made_it = asyncio.Event()

            async def second() -> Any:
                await first_made_it.wait()
                async with db.transaction() as conn:  # sees no committed row, inserts too
                    return await access_row(TenantScope(conn, tenant_id), now)

            other = asyncio.create_task(second())
            async with db.transaction() as conn:
                one = await access_row(TenantScope(conn, tenant_id), now)
                first_made_it.set()
                await asyncio.sleep(0.5)  # the second's insert now waits for this commit
            return one, await asyncio.wait_for(other, 30)
        finally:
            await db.close()

    one, two = asyncio.run(race())
    assert one.external_id.startswith("bucketreel-")
    assert (two.tenant_id, two.external_id) == (one.tenant_id, one.external_id)
