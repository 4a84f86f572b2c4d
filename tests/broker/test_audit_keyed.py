"""The audit chain is MACed under a key that is not in the database (issue 13, finding 10).

Someone with write access to the database deletes a view receipt and recomputes the hash
chain, as they can without the key: `admin audit-verify` says BROKEN, naming the entries.
The key rotates with the master keys (entries verify under each version present; a
rotation re-MACs them), and entries written before migration 0011 get their MAC from the
migration when it runs with the broker's keys, or are named as unkeyed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from alembic import command
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from broker import admin
from broker.audit import log as audit
from broker.db import migrate
from broker.db.database import Database
from broker.db.engine import create_engine
from broker.db.schema import audit_log, tenants
from broker.db.scope import TenantScope
from broker.settings import Settings, generate_secrets
from tests.identity.people import Client, person, verified_recording
from tests.support.api import PASSWORD, Tenant, enroll, make_tenant
from tests.support.broker import BrokerCommandError, BrokerProcess
from tests.support.s3 import S3Endpoint

T = TypeVar("T")
VIEW = "segment.view_url"


def on_engine(url: str, use: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    async def go() -> T:
        engine = create_engine(url)
        try:
            return await use(engine)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def recompute_without_the_key(url: str, tenant_id: str, *, drop_seq: int, macs: str) -> None:
    """The attacker: delete one entry, renumber the rest, recompute every hash from there on
    (SHA-256 is no secret). `macs`: "keep" the old MAC columns, or "clear" them."""

    async def go(engine: AsyncEngine) -> None:
        async with engine.begin() as conn:
            where = audit_log.c.tenant_id == tenant_id
            await conn.execute(delete(audit_log).where(where, audit_log.c.seq == drop_seq))
            rows = (await conn.execute(
                select(audit_log).where(where, audit_log.c.seq > drop_seq)
                .order_by(audit_log.c.seq)
            )).all()
            prev = (await conn.execute(
                select(audit_log.c.hash).where(where, audit_log.c.seq == drop_seq - 1)
            )).scalar_one()
            for r in rows:
                seq = r.seq - 1
                digest = audit.entry_hash(
                    tenant_id=tenant_id, seq=seq, at=r.at, actor=r.actor, action=r.action,
                    target=r.target, details=r.details, prev_hash=prev,
                )
                values: dict[str, Any] = {"seq": seq, "prev_hash": prev, "hash": digest}
                if macs == "clear":
                    values.update(mac=None, mac_key=None)
                await conn.execute(update(audit_log).where(audit_log.c.id == r.id).values(values))
                prev = digest

    on_engine(url, go)


def verify(broker: BrokerProcess, tenant: Tenant) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(
        broker.cli("admin", "audit-verify", "--tenant", tenant.tenant_id)
    )
    return result


@pytest.mark.parametrize("macs", ["keep", "clear"])
def test_a_receipt_deleted_and_the_chain_recomputed_without_the_key_is_found(
    broker: BrokerProcess, s3_endpoint: S3Endpoint, macs: str
) -> None:
    api = Client(broker.url)
    tenant = make_tenant(broker, s3_endpoint)
    viewer = person(api, broker, tenant, "admin")
    recording_id = verified_recording(api, enroll(api, broker, tenant))
    for _ in range(2):
        minted = api.call(
            "POST", f"/api/v1/recordings/{recording_id}/segments/0/view",
            token=viewer.access_token,
        )
        assert minted.status == 200, minted.body
    before = verify(broker, tenant)
    assert before["intact"] is True

    def receipts() -> list[int]:
        async def go(engine: AsyncEngine) -> list[int]:
            async with engine.connect() as conn:
                return list((await conn.execute(
                    select(audit_log.c.seq).where(
                        audit_log.c.tenant_id == tenant.tenant_id, audit_log.c.action == VIEW
                    ).order_by(audit_log.c.seq)
                )).scalars())
        return on_engine(broker.database_url, go)

    first_receipt = receipts()[0]
    recompute_without_the_key(
        broker.database_url, tenant.tenant_id, drop_seq=first_receipt, macs=macs
    )
    assert len(receipts()) == 1
    with pytest.raises(BrokerCommandError) as broken:
        verify(broker, tenant)
    message = str(broken.value)
    assert "BROKEN" in message
    wrong = "has no MAC" if macs == "clear" else "has a wrong MAC"
    assert f"entry {first_receipt} {wrong}" in message
    assert before["mac_keys"] == {"v1": before["entries"]}


# --- rotation and migration, in this process, on a database of their own -------------------


def master_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def settings_for(url: str, master_keys: str, base: dict[str, str]) -> Settings:
    return Settings.from_env({
        **base, "BUCKETREEL_DATABASE_URL": url, "BUCKETREEL_MASTER_KEYS": master_keys,
    })


def with_admin(settings: Settings, use: Callable[[admin.AdminContext], Awaitable[T]]) -> T:
    async def go() -> T:
        async with admin.context(settings) as ctx:
            return await use(ctx)

    return asyncio.run(go())


async def report(ctx: admin.AdminContext, tenant_id: str) -> audit.ChainReport:
    async with ctx.db.transaction() as conn:
        return await audit.verify_chain(TenantScope(conn, tenant_id))


def test_the_audit_key_rotates_with_the_master_keys(empty_database: str) -> None:
    base = generate_secrets()
    v1, v2 = f"v1:{master_key()}", f"v2:{master_key()}"
    old, both, new = (
        settings_for(empty_database, keys, base) for keys in (v1, f"{v1},{v2}", v2)
    )

    async def write(ctx: admin.AdminContext) -> str:
        tenant_id = (await admin.create_tenant(ctx, name=f"t-{secrets.token_hex(3)}"))[
            "tenant_id"
        ]
        await admin.create_user(
            ctx, tenant=tenant_id, email="a@example.test", role="admin", password=PASSWORD
        )
        return str(tenant_id)

    tenant_id = with_admin(old, write)
    assert with_admin(old, lambda ctx: report(ctx, tenant_id)).key_versions == {"v1": 2}

    async def more(ctx: admin.AdminContext) -> audit.ChainReport:
        await admin.create_user(
            ctx, tenant=tenant_id, email="b@example.test", role="manager", password=PASSWORD
        )
        return await report(ctx, tenant_id)

    mixed = with_admin(both, more)  # new entries under v2; the older ones still verify
    assert mixed.intact, mixed.problems
    assert mixed.key_versions == {"v1": 2, "v2": 1}
    unknown = with_admin(new, lambda ctx: report(ctx, tenant_id))  # v1 gone too early
    assert any("audit key v1, which is not in" in p for p in unknown.problems)

    rotated = with_admin(both, admin.rotate_master_key)
    assert rotated["audit"] == {"remaced": 2, "broken_tenants": []}
    after = with_admin(new, lambda ctx: report(ctx, tenant_id))
    assert after.intact, after.problems
    assert after.key_versions == {"v2": 3}
    assert after.head is not None
    assert mixed.head is not None
    assert (after.head.seq, after.head.hash) == (3, mixed.head.hash)  # the chain as it was


def legacy_rows(tenant_id: str, count: int) -> list[dict[str, Any]]:
    """Entries as the broker wrote them before 0011: a hash chain, no MAC."""
    rows: list[dict[str, Any]] = []
    prev = audit.GENESIS
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for seq in range(1, count + 1):
        when, target = at + timedelta(minutes=seq), f"user-{seq}"
        digest = audit.entry_hash(
            tenant_id=tenant_id, seq=seq, at=when, actor="operator", action="user.create",
            target=target, details="{}", prev_hash=prev,
        )
        rows.append({
            "tenant_id": tenant_id, "seq": seq, "at": when, "actor": "operator",
            "action": "user.create", "target": target, "details": "{}", "prev_hash": prev,
            "hash": digest,
        })
        prev = digest
    return rows


def test_migration_0011_macs_older_entries_when_it_has_the_keys(empty_database: str) -> None:
    url = empty_database
    settings = settings_for(url, f"v1:{master_key()}", generate_secrets())
    good, broken = str(secrets.token_hex(8)), str(secrets.token_hex(8))

    async def before_0011(engine: AsyncEngine) -> None:
        async with engine.begin() as conn:
            await conn.run_sync(
                lambda sync: command.upgrade(migrate.alembic_config(sync), "0010")
            )
        async with engine.begin() as conn:
            for tenant_id in (good, broken):
                await conn.execute(insert(tenants).values(
                    id=tenant_id, name=tenant_id, created_at=datetime.now(UTC)
                ))
                rows = legacy_rows(tenant_id, 4)
                if tenant_id == broken:
                    rows[1]["details"] = '{"edited":true}'  # broken before the upgrade
                await conn.execute(insert(audit_log), rows)

    on_engine(url, before_0011)
    with_admin(settings, lambda ctx: asyncio.sleep(0))  # migrates, with the broker's keys

    sealed = with_admin(settings, lambda ctx: report(ctx, good))
    assert sealed.intact, sealed.problems
    assert sealed.key_versions == {"v1": 4}
    still = with_admin(settings, lambda ctx: report(ctx, broken))
    assert "entry 2 does not match the chain" in still.problems
    assert "entry 1 has no MAC" in " ".join(still.problems)  # left unkeyed, and named


def test_migration_0011_without_keys_leaves_older_entries_named_unkeyed(
    empty_database: str,
) -> None:
    url = empty_database
    tenant_id = str(secrets.token_hex(8))

    async def migrate_without_keys(engine: AsyncEngine) -> None:
        async with engine.begin() as conn:
            await conn.run_sync(
                lambda sync: command.upgrade(migrate.alembic_config(sync), "0010")
            )
            await conn.execute(insert(tenants).values(
                id=tenant_id, name=tenant_id, created_at=datetime.now(UTC)
            ))
            await conn.execute(insert(audit_log), legacy_rows(tenant_id, 2))
        await migrate.upgrade(engine)

    on_engine(url, migrate_without_keys)
    settings = settings_for(url, f"v1:{master_key()}", generate_secrets())
    found = with_admin(settings, lambda ctx: report(ctx, tenant_id))
    assert not found.intact
    assert [p.split(":")[0] for p in found.problems] == ["entry 1 has no MAC", "entry 2 has no MAC"]


def test_recording_an_entry_without_the_keys_is_refused(empty_database: str) -> None:
    """A database handle wired without the settings cannot write an unkeyed entry."""

    async def go() -> None:
        db = Database.from_url(empty_database)
        try:
            await migrate.upgrade(db.engine)
            async with db.transaction() as conn:
                await conn.execute(insert(tenants).values(
                    id="t", name="t", created_at=datetime.now(UTC)
                ))
                with pytest.raises(audit.AuditKeyMissing):
                    await audit.record(
                        TenantScope(conn, "t"), at=datetime.now(UTC), actor="operator",
                        action="x", target="y",
                    )
        finally:
            await db.close()

    asyncio.run(go())


def test_employees_see_the_chain_head_beside_their_receipts(
    broker: BrokerProcess, s3_endpoint: S3Endpoint
) -> None:
    """The receipts page shows the head (seq, MAC, hash) audit-verify reports; cut entries
    off the end of the log and the number shown drops."""
    api = Client(broker.url)
    tenant = make_tenant(broker, s3_endpoint)
    employee = person(api, broker, tenant)
    viewer = person(api, broker, tenant, "admin")
    recording_id = verified_recording(api, enroll(api, broker, tenant, employee.user_id))
    minted = api.call(
        "POST", f"/api/v1/recordings/{recording_id}/segments/0/view", token=viewer.access_token
    )
    assert minted.status == 200, minted.body
    head = verify(broker, tenant)["head"]

    def shown() -> str:
        page = api.call("GET", "/receipts", token=employee.access_token)
        assert page.status == 200
        return page.raw.decode()

    text = shown()
    assert viewer.email in text
    assert f"ends at entry <strong>{head['seq']}</strong>" in text
    assert f"<code>{head['mac'][:16]}</code> under key v1" in text
    assert f"<code>{head['hash'][:16]}</code>" in text

    async def cut_the_last(engine: AsyncEngine) -> None:
        async with engine.begin() as conn:
            await conn.execute(delete(audit_log).where(
                audit_log.c.tenant_id == tenant.tenant_id, audit_log.c.seq == head["seq"]
            ))

    on_engine(broker.database_url, cut_the_last)
    assert f"ends at entry <strong>{head['seq'] - 1}</strong>" in shown()
