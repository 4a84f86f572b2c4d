"""HTTP handlers for a tenant's admins: the bucket, its credentials, the self-check.

Thin: read and shape the request, call `StorageAccess`, reply. Secrets are taken from the
body and never returned or logged.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from broker.identity import Principal
from broker.web.appkeys import SERVICES
from broker.web.http import json_object, read_json, reply, text_field
from shared.wire import WireError


def _optional_text(body: dict[str, Any], name: str, max_len: int) -> str | None:
    if body.get(name) is None:
        return None
    return text_field(body, name, max_len)


async def get_storage(request: web.Request, principal: Principal) -> web.Response:
    return reply(await request.app[SERVICES].storage.status(principal.tenant_id))


async def put_storage(request: web.Request, principal: Principal) -> web.Response:
    body = json_object(await read_json(request))
    accept_risk = body.get("accept_risk", False)
    if not isinstance(accept_risk, bool):
        raise WireError("accept_risk", "must be true or false")
    prefix = body.get("prefix", "")
    if not isinstance(prefix, str):
        raise WireError("prefix", "must be a string")
    saved = await request.app[SERVICES].storage.save(
        principal.tenant_id,
        bucket=text_field(body, "bucket", 63),
        region=text_field(body, "region", 40),
        endpoint_url=_optional_text(body, "endpoint_url", 500),
        prefix=prefix,
        access_key_id=_optional_text(body, "access_key_id", 128),
        secret_access_key=_optional_text(body, "secret_access_key", 256),
        role_arn=_optional_text(body, "role_arn", 2048),
        accept_risk=accept_risk,
        actor=f"user:{principal.user_id}",
    )
    return reply(saved)


async def check_storage(request: web.Request, principal: Principal) -> web.Response:
    return reply(
        await request.app[SERVICES].storage.check(
            principal.tenant_id, actor=f"user:{principal.user_id}"
        )
    )
