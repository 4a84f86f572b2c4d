"""Operator commands (`bucketreel-broker admin …`): plain async functions over the services,
each returning the JSON-able result the CLI prints."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from broker.accounts import service as accounts
from broker.accounts.passwords import Passwords
from broker.clock import Clock, utcnow
from broker.db import migrate
from broker.db.database import Database
from broker.db.scope import TenantScope
from broker.devices.enrollment import DeviceAuth
from broker.recordings.service import RecordingService
from broker.sealing import ChainKeys
from broker.services import build_services
from broker.settings import PREFIX, Settings
from broker.storage.service import StorageAccess
from shared.wire import PolicyUpdate, format_timestamp


@dataclass(frozen=True, slots=True)
class AdminContext:
    settings: Settings
    db: Database
    devices: DeviceAuth
    recordings: RecordingService
    passwords: Passwords
    clock: Clock
    storage: StorageAccess


@asynccontextmanager
async def context(settings: Settings, clock: Clock = utcnow) -> AsyncIterator[AdminContext]:
    db = Database.from_url(
        settings.database_url, audit_keys=ChainKeys.from_master(settings.master_keys)
    )
    try:
        if settings.migrate_on_start:
            await migrate.upgrade(db.engine, audit_keys=db.audit_keys)
        services = build_services(settings, db, clock)
        yield AdminContext(
            settings, db, services.devices, services.recordings, services.passwords, clock,
            services.storage,
        )
    finally:
        await db.close()


async def create_tenant(ctx: AdminContext, name: str) -> dict[str, Any]:
    async for txn in ctx.db.attempts():
        async with txn as conn:
            result = {"tenant_id": await accounts.create_tenant(conn, name=name, now=ctx.clock())}
    return result


async def create_user(
    ctx: AdminContext, *, tenant: str, email: str, role: str, password: str,
    name: str | None = None,
) -> dict[str, Any]:
    async for txn in ctx.db.attempts():
        async with txn as conn:
            scope = TenantScope(conn, await accounts.resolve_tenant(conn, tenant))
            user_id = await accounts.create_user(
                scope,
                email=email,
                role=role,
                password=password,
                passwords=ctx.passwords,
                now=ctx.clock(),
                actor="operator",
                display_name=name,
            )
    return {"user_id": user_id}


async def set_storage(
    ctx: AdminContext,
    *,
    tenant: str,
    bucket: str,
    region: str,
    endpoint_url: str | None,
    prefix: str,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    role_arn: str | None = None,
    accept_risk: bool = False,
) -> dict[str, Any]:
    """Save the tenant's bucket with static keys or a role; the self-check runs first and its
    findings refuse the save unless `accept_risk` (audited)."""
    async with ctx.db.transaction() as conn:
        tenant_id = await accounts.resolve_tenant(conn, tenant)
    return await ctx.storage.save(
        tenant_id, bucket=bucket, region=region, endpoint_url=endpoint_url, prefix=prefix,
        access_key_id=access_key_id, secret_access_key=secret_access_key, role_arn=role_arn,
        accept_risk=accept_risk, actor="operator",
    )


async def check_storage(ctx: AdminContext, *, tenant: str) -> dict[str, Any]:
    """Run the storage self-check now; returns the storage status with its result."""
    async with ctx.db.transaction() as conn:
        tenant_id = await accounts.resolve_tenant(conn, tenant)
    return await ctx.storage.check(tenant_id, actor="operator")


async def storage_status(ctx: AdminContext, *, tenant: str) -> dict[str, Any]:
    """The tenant's storage, access state, external ID and last self-check (no secrets)."""
    async with ctx.db.transaction() as conn:
        tenant_id = await accounts.resolve_tenant(conn, tenant)
    return await ctx.storage.status(tenant_id)


async def enrollment_code(
    ctx: AdminContext,
    *,
    tenant: str,
    user: str,
    uses: int = 1,
    expires_in: int | None = None,
    label: str | None = None,
) -> dict[str, Any]:
    """A code that enrolls up to `uses` devices of the person (shown this once)."""
    async with ctx.db.transaction() as conn:
        tenant_id = await accounts.resolve_tenant(conn, tenant)
        user_id = await accounts.resolve_user(TenantScope(conn, tenant_id), user)
    issued = await ctx.devices.issue_enrollment_code(
        tenant_id, user_id, actor="operator", max_uses=uses, ttl=expires_in, label=label
    )
    return {
        "code": issued.code,
        "code_id": issued.info["code_id"],
        "user_id": user_id,
        "max_uses": uses,
        "expires_at": format_timestamp(issued.expires_at),
    }


async def view_url(ctx: AdminContext, *, tenant: str, recording: str, seq: int) -> dict[str, Any]:
    async with ctx.db.transaction() as conn:
        tenant_id = await accounts.resolve_tenant(conn, tenant)
    view = await ctx.recordings.operator_view_url(tenant_id, recording, seq)
    return {"url": view.url, "expires_at": format_timestamp(view.expires_at)}


async def verify_recording(ctx: AdminContext, *, tenant: str, recording: str) -> dict[str, Any]:
    """Re-check a recording's chain of custody and every object's stored SHA-256 (HeadObject
    with checksum mode, never the content). `ok` is false when anything was found."""
    async with ctx.db.transaction() as conn:
        tenant_id = await accounts.resolve_tenant(conn, tenant)
    report = await ctx.recordings.verify_custody(tenant_id, recording)
    return report.to_json()


async def assign(ctx: AdminContext, *, tenant: str, manager: str, employee: str) -> dict[str, Any]:
    async for txn in ctx.db.attempts():
        async with txn as conn:
            scope = TenantScope(conn, await accounts.resolve_tenant(conn, tenant))
            manager_id = await accounts.resolve_user(scope, manager)
            employee_id = await accounts.resolve_user(scope, employee)
            created = await accounts.assign(
                scope,
                manager_id=manager_id,
                employee_id=employee_id,
                now=ctx.clock(),
                actor="operator",
            )
    return {"manager_id": manager_id, "employee_id": employee_id, "created": created}


async def devices(ctx: AdminContext, *, tenant: str) -> dict[str, Any]:
    async with ctx.db.transaction() as conn:
        tenant_id = await accounts.resolve_tenant(conn, tenant)
    return {"devices": await ctx.devices.list_devices(tenant_id)}


async def revoke_device(ctx: AdminContext, *, tenant: str, device: str) -> dict[str, Any]:
    async with ctx.db.transaction() as conn:
        tenant_id = await accounts.resolve_tenant(conn, tenant)
    await ctx.devices.revoke(tenant_id, device, actor="operator")
    return {"device_id": device, "state": "revoked"}


async def set_device_cap(
    ctx: AdminContext, *, tenant: str, user: str | None, cap: int | None
) -> dict[str, Any]:
    """The tenant's device cap (`user` None) or one person's; `cap` None clears it."""
    async with ctx.db.transaction() as conn:
        tenant_id = await accounts.resolve_tenant(conn, tenant)
        user_id = (
            await accounts.resolve_user(TenantScope(conn, tenant_id), user) if user else None
        )
    return await ctx.devices.set_cap(tenant_id, user_id=user_id, cap=cap, actor="operator")


async def show_policy(ctx: AdminContext, *, tenant: str) -> dict[str, Any]:
    """The tenant's recording policy: every key (null: left to each agent), `updated_at`."""
    async with ctx.db.transaction() as conn:
        tenant_id = await accounts.resolve_tenant(conn, tenant)
    return await ctx.devices.describe_policy(tenant_id)


async def set_policy(ctx: AdminContext, *, tenant: str, change: PolicyUpdate) -> dict[str, Any]:
    """Set (or clear, with None) the keys `change` names; audited with old and new values."""
    async with ctx.db.transaction() as conn:
        tenant_id = await accounts.resolve_tenant(conn, tenant)
    return await ctx.devices.update_policy(tenant_id, change, actor="operator")


def rotate_session_key(settings: Settings) -> dict[str, str]:
    """The env lines that promote a fresh signing key and keep the current one for verifying.

    Tokens signed with the current key keep working (it becomes the previous key) until the
    previous key is dropped at the next rotation; by then, with access tokens living at most
    15 minutes, none signed with it is still alive. The broker never writes its own env:
    the operator sets these on every replica and restarts them.
    """
    return {
        PREFIX + "SECRET_KEY": secrets.token_urlsafe(48),
        PREFIX + "SECRET_KEY_PREVIOUS": settings.secret_key.reveal(),
    }


async def rotate_master_key(ctx: AdminContext, *, batch_size: int = 200) -> dict[str, Any]:
    """Re-seal every sealed value under the highest version in BUCKETREEL_MASTER_KEYS, and
    MAC every tenant's audit chain under the audit key of that version."""
    from broker.storage import rekey

    result = await rekey.reseal_all(ctx.db, ctx.settings.master_keys, batch_size=batch_size)
    return {**result, "audit": await _remac_audit(ctx)}


async def _remac_audit(ctx: AdminContext) -> dict[str, Any]:
    """Each tenant's chain, verified, then MACed anew where an entry is under an older key;
    a broken chain is left as it is (and named), so a new MAC never blesses a rewrite."""
    from broker.audit import log as audit
    from broker.db.schema import tenants

    async with ctx.db.transaction() as conn:
        tenant_ids = [r.id for r in (await conn.execute(select(tenants.c.id))).all()]
    remaced, broken = 0, []
    for tenant_id in tenant_ids:
        try:
            async for txn in ctx.db.attempts():
                async with txn as conn:
                    remaced_here = await audit.remac(TenantScope(conn, tenant_id))
        except audit.ChainBroken:
            broken.append(tenant_id)
            continue
        remaced += remaced_here
    return {"remaced": remaced, "broken_tenants": broken}
