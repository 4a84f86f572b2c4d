"""Who is calling: the bearer token, verified, and the device checked against the database."""

from __future__ import annotations

from aiohttp import web

from broker.auth.tokens import Principal
from broker.db.scope import TenantScope
from broker.errors import Unauthenticated
from broker.web.appkeys import DATABASE, DEVICES, SIGNER


def bearer_token(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send `Authorization: Bearer <access token>`")
    return token.strip()


async def device_principal(request: web.Request) -> Principal:
    principal = request.app[SIGNER].verify(bearer_token(request), "device")
    async with request.app[DATABASE].transaction() as conn:
        await request.app[DEVICES].check_device(TenantScope(conn, principal.tenant_id), principal)
    return principal
