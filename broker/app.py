"""The app factory: settings in, a wired aiohttp application out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from broker.audit.log import ChainKeys
from broker.clock import Clock, utcnow
from broker.db import migrate
from broker.db.database import Database
from broker.db.housekeeping import housekeeping
from broker.services import build_services
from broker.settings import Settings
from broker.web import appkeys as keys
from broker.web import middleware, openapi, routes

log = logging.getLogger(__name__)


def create_app(settings: Settings, *, clock: Clock = utcnow) -> web.Application:
    # The body limit is structural (G1): no route can take a segment's worth of bytes.
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[middleware.errors])
    app[keys.SETTINGS] = settings
    app[keys.CLOCK] = clock
    app[keys.OPENAPI] = openapi.document(routes.ROUTES)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_services)
    app.cleanup_ctx.append(housekeeping)
    app.on_response_prepare.append(middleware.security_headers)
    routes.install(app)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
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
        app[keys.DATABASE] = db
        yield
    finally:
        await db.close()


async def _services(app: web.Application) -> AsyncIterator[None]:
    services = build_services(app[keys.SETTINGS], app[keys.DATABASE], app[keys.CLOCK])
    app[keys.SIGNER] = services.signer
    app[keys.DEVICES] = services.devices
    app[keys.RECORDINGS] = services.recordings
    app[keys.SESSIONS] = services.sessions
    app[keys.LOGIN] = services.login
    app[keys.VIEWING] = services.viewing
    app[keys.STORAGE] = services.storage
    app[keys.DEVICE_LIMITS] = services.device_limits
    yield
