"""Migration 0015 queues the records of what existed before it: every device's record and
every finished recording's manifest (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from broker.db import migrate
from broker.db.engine import create_engine
from broker.db.schema import bucket_outbox, devices, recordings, tenants, users
from tests.conftest import BROKER_DB_ROLE

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


async def to(conn: AsyncConnection, revision: str) -> None:
    await conn.run_sync(lambda sync: command.upgrade(migrate.alembic_config(sync), revision))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_existing_devices_and_finished_recordings_are_queued(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'broker.db'}"
    else:
        server = request.getfixturevalue("postgres_server")
        url = server.create_database(f"m15_{secrets.token_hex(4)}", owner=BROKER_DB_ROLE)
    tenant, user, device = (str(uuid.uuid4()) for _ in range(3))
    finished, open_ = str(uuid.uuid4()), str(uuid.uuid4())

    async def go() -> list[tuple[str, str, str]]:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                await to(conn, "0014")
                await conn.execute(insert(tenants).values(id=tenant, name="t", created_at=NOW))
                await conn.execute(insert(users).values(
                    id=user, tenant_id=tenant, email="e@example.test", role="employee",
                    password_hash="x", session_version=1, created_at=NOW,
                ))
                await conn.execute(insert(devices).values(
                    id=device, tenant_id=tenant, user_id=user, name="d", created_at=NOW,
                ))
                for rid, state in ((finished, "finished"), (open_, "recording")):
                    await conn.execute(insert(recordings).values(
                        id=rid, tenant_id=tenant, user_id=user, device_id=device, state=state,
                        started_at=NOW, created_at=NOW,
                    ))
                await to(conn, "0015")
                rows = (await conn.execute(select(
                    bucket_outbox.c.tenant_id, bucket_outbox.c.kind, bucket_outbox.c.ref,
                    bucket_outbox.c.next_attempt_at, bucket_outbox.c.delivered_at,
                ))).all()
            assert all(r.delivered_at is None and r.next_attempt_at.tzinfo for r in rows)
            return sorted((r.tenant_id, r.kind, r.ref) for r in rows)
        finally:
            await engine.dispose()

    assert asyncio.run(go()) == sorted([(tenant, "device", device),
                                        (tenant, "manifest", finished)])
