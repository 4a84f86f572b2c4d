"""`bucketreel-broker admin audit-verify` checks a tenant's hash chain: intact → exit 0 and a
JSON summary; one edited entry → exit 1 and a message naming it."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import update

from broker.db.engine import create_engine
from broker.db.schema import audit_log
from tests.identity.people import Client, person
from tests.support.api import make_tenant
from tests.support.broker import BrokerCommandError, BrokerProcess
from tests.support.s3 import S3Endpoint


def tamper(database_url: str, tenant_id: str, seq: int) -> None:
    async def go() -> None:
        engine = create_engine(database_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    update(audit_log)
                    .where(audit_log.c.tenant_id == tenant_id, audit_log.c.seq == seq)
                    .values(details=json.dumps({"edited": "after the fact"}))
                )
        finally:
            await engine.dispose()

    asyncio.run(go())


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_audit_verify_passes_an_intact_chain_and_names_a_broken_entry(
    broker: BrokerProcess, s3_endpoint: S3Endpoint
) -> None:
    tenant = make_tenant(broker, s3_endpoint)
    person(Client(broker.url), broker, tenant, "manager")

    intact = json.loads(broker.cli("admin", "audit-verify", "--tenant", tenant.name))
    assert intact["intact"] is True
    assert intact["entries"] >= 3

    tamper(broker.database_url, tenant.tenant_id, 2)
    with pytest.raises(BrokerCommandError) as broken:
        broker.cli("admin", "audit-verify", "--tenant", tenant.name)
    message = str(broken.value)
    assert "exited with code 1" in message
    assert "BROKEN" in message
    assert "entry 2 does not match the chain" in message
