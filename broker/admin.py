"""Operator commands (`bucketreel-broker admin …`): plain async functions over the services,
each returning the JSON-able result the CLI prints."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from broker.accounts import service as accounts
from broker.auth.devices import DeviceAuth
from broker.clock import Clock, utcnow
from broker.db import migrate
from broker.db.database import Database
from broker.db.scope import TenantScope
from broker.recordings.service import RecordingService
from broker.services import build_services
from broker.settings import Settings
from broker.storage import config as storage_config
from shared.wire import format_timestamp


@dataclass(frozen=True, slots=True)
class AdminContext:
    settings: Settings
    db: Database
    devices: DeviceAuth
    recordings: RecordingService
    clock: Clock


@asynccontextmanager
async def context(settings: Settings, clock: Clock = utcnow) -> AsyncIterator[AdminContext]:
    db = Database.from_url(settings.database_url)
    try:
        if settings.migrate_on_start:
            await migrate.upgrade(db.engine)
        _signer, devices, recordings = build_services(settings, db, clock)
        yield AdminContext(settings, db, devices, recordings, clock)
    finally:
        await db.close()


async def create_tenant(ctx: AdminContext, name: str) -> dict[str, Any]:
    async with ctx.db.transaction() as conn:
        return {"tenant_id": await accounts.create_tenant(conn, name=name, now=ctx.clock())}


async def create_user(
    ctx: AdminContext, *, tenant: str, email: str, role: str, password: str
) -> dict[str, Any]:
    async with ctx.db.transaction() as conn:
        scope = TenantScope(conn, await accounts.resolve_tenant(conn, tenant))
        user_id = await accounts.create_user(
            scope, email=email, role=role, password=password, now=ctx.clock(), actor="operator"
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
    access_key_id: str,
    secret_access_key: str,
) -> dict[str, Any]:
    async with ctx.db.transaction() as conn:
        scope = TenantScope(conn, await accounts.resolve_tenant(conn, tenant))
        version = await storage_config.save(
            scope,
            ctx.settings.master_keys,
            bucket=bucket,
            region=region,
            endpoint_url=endpoint_url,
            prefix=prefix,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            now=ctx.clock(),
            actor="operator",
        )
    return {"tenant_id": scope.tenant_id, "bucket": bucket, "credential_version": version}


async def enrollment_code(ctx: AdminContext, *, tenant: str, user: str) -> dict[str, Any]:
    async with ctx.db.transaction() as conn:
        tenant_id = await accounts.resolve_tenant(conn, tenant)
        user_id = await accounts.resolve_user(TenantScope(conn, tenant_id), user)
    issued = await ctx.devices.issue_enrollment_code(tenant_id, user_id, actor="operator")
    return {
        "code": issued.code,
        "user_id": user_id,
        "expires_at": format_timestamp(issued.expires_at),
    }


async def view_url(ctx: AdminContext, *, tenant: str, recording: str, seq: int) -> dict[str, Any]:
    async with ctx.db.transaction() as conn:
        tenant_id = await accounts.resolve_tenant(conn, tenant)
    view = await ctx.recordings.operator_view_url(tenant_id, recording, seq)
    return {"url": view.url, "expires_at": format_timestamp(view.expires_at)}
