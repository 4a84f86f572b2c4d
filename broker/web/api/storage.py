"""HTTP handlers for a tenant's admins: the bucket, its credentials, the self-check.

Thin: take the decoded request, call `StorageAccess`, shape the reply. Secrets are taken from
the body and never returned or logged.
"""

from __future__ import annotations

from aiohttp import web

from broker.identity import Principal
from broker.web.appkeys import SERVICES
from broker.web.http import reply, shape
from shared.api import StoragePolicies, StorageRequest, StorageSaved, StorageStatus

# The policies route's query, each optional (`StorageAccess.policies` checks their form).
POLICY_QUERY = ("bucket", "prefix", "principal_arn")


async def get_storage(request: web.Request, principal: Principal) -> web.Response:
    status = await request.app[SERVICES].storage.status(principal.tenant_id)
    return reply(shape(StorageStatus, status))


async def put_storage(
    request: web.Request, principal: Principal, body: StorageRequest
) -> web.Response:
    # the body's fields are `save`'s arguments, by name (the Storage page's form does the same)
    saved = await request.app[SERVICES].storage.save(
        principal.tenant_id, actor=f"user:{principal.user_id}", **body.to_json()
    )
    return reply(shape(StorageSaved, saved))


async def check_storage(request: web.Request, principal: Principal) -> web.Response:
    checked = await request.app[SERVICES].storage.check(
        principal.tenant_id, actor=f"user:{principal.user_id}"
    )
    return reply(shape(StorageStatus, checked))


async def get_policies(request: web.Request, principal: Principal) -> web.Response:
    documents = await request.app[SERVICES].storage.policies(
        principal.tenant_id, **{name: request.query.get(name) or None for name in POLICY_QUERY}
    )
    return reply(shape(StoragePolicies, documents))
