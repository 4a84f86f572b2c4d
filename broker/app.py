"""The app factory: settings in, a wired aiohttp application out."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from aiohttp import web

from broker.clock import Clock, utcnow
from broker.db import housekeeping, migrate
from broker.db.database import Database
from broker.sealing import ChainKeys
from broker.services import Services, build_services
from broker.settings import Settings
from broker.storage import monitor
from broker.web import appkeys as keys
from broker.web import middleware, openapi, routes, templating

log = logging.getLogger(__name__)


def serve(settings: Settings, *, host: str, port: int) -> None:
    """Run the broker's HTTP server until it is stopped (SIGINT or SIGTERM), then drain:
    `/healthz` answers 503, and requests in flight finish (`broker.web.serving`)."""
    from broker.web import logs, serving

    logs.configure(settings.log_level)
    asyncio.run(serving.serve(
        create_app(settings),
        host=host,
        port=port,
        drain_seconds=settings.drain_seconds,
        shutdown_timeout=settings.shutdown_timeout,
        access_log_class=logs.AccessLogger,
    ))


def create_app(settings: Settings, *, clock: Clock = utcnow) -> web.Application:
    # The body limit is structural (G1): no route can take a segment's worth of bytes.
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[middleware.errors, middleware.same_origin],
    )
    app[keys.OPENAPI] = openapi.document(routes.ROUTES)
    app[keys.TEMPLATES] = templating.environment()  # once, not per request
    app[keys.DRAIN] = keys.Drain()  # set by the stop signal: readiness then answers 503
    app.cleanup_ctx.append(functools.partial(_services, settings, clock))
    app.cleanup_ctx.append(_forever("bucketreel-housekeeping", _housekeeping))
    app.cleanup_ctx.append(_forever("bucketreel-storage-watch", _storage_watch))
    app.cleanup_ctx.append(_forever("bucketreel-invalidations", _invalidations))
    app.cleanup_ctx.append(_forever("bucketreel-bucket-outbox", _bucket_outbox))
    app.on_response_prepare.append(middleware.security_headers)
    routes.install(app)
    return app


async def _services(
    settings: Settings, clock: Clock, app: web.Application
) -> AsyncIterator[None]:
    """The database opened (and migrated when asked), the services wired on it."""
    db = Database.from_url(
        settings.database_url, audit_keys=ChainKeys.from_master(settings.master_keys)
    )
    try:
        if settings.migrate_on_start:
            await migrate.upgrade(db.engine, audit_keys=db.audit_keys)
        if role := await db.bypasses_row_security():
            log.warning(
                "the database role %r is a superuser or has BYPASSRLS: PostgreSQL's row-level "
                "security (the second wall between tenants) does not apply to it; connect "
                "as a plain role that owns the tables", role,
            )
        app[keys.SERVICES] = build_services(settings, db, clock)
        try:
            async with app[keys.SERVICES].storage.connections():  # HeadObject's keep-alive
                yield
        finally:
            app[keys.SERVICES].storage.close()  # the storage pool: no new calls to buckets
    finally:
        await db.close()


def _forever(
    name: str, work: Callable[[Services], Coroutine[Any, Any, None]]
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context running `work(services)` as a task for the app's lifetime."""

    async def running(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(work(app[keys.SERVICES]), name=name)
        try:
            yield
        finally:
            # Cancelled until it ends: a loop may catch what a cancel turned into and go on.
            while not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=1)
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return running


def _housekeeping(services: Services) -> Coroutine[Any, Any, None]:
    """The sweeper (`broker.db.housekeeping`)."""
    return housekeeping.sweep_forever(
        services.db, services.clock, login_window=services.settings.login_window
    )


def _bucket_outbox(services: Services) -> Coroutine[Any, Any, None]:
    """The bucket outbox's flusher (`broker.bucket.flusher`): device records, manifests and
    audit anchors written to the tenants' buckets, write-once."""
    return services.bucket.run_forever()


def _storage_watch(services: Services) -> Coroutine[Any, Any, None]:
    """The storage watch (`broker.storage.monitor`): a revoked key shows on the admin pages
    within `storage_check_interval` seconds."""
    return monitor.watch_forever(
        services.db, services.storage, interval=services.settings.storage_check_interval
    )


def _invalidations(services: Services) -> Coroutine[Any, Any, None]:
    """Other replicas' invalidations (`broker.db.notify`), heard on PostgreSQL."""
    return services.db.listen()
