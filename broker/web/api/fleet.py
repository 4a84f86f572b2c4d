"""HTTP handlers for a tenant's admins: enrollment codes for fleet installs."""

from __future__ import annotations

from aiohttp import web

from broker.devices.codes import enroll_command
from broker.identity import Principal
from broker.web.appkeys import SERVICES
from broker.web.http import public_url, reply, shape
from shared.api import (
    CreateEnrollmentCode,
    EnrollmentCodeCreated,
    EnrollmentCodeInfo,
    EnrollmentCodes,
)


async def list_codes(request: web.Request, principal: Principal) -> web.Response:
    listed = await request.app[SERVICES].devices.list_codes(principal.tenant_id)
    return reply(shape(EnrollmentCodes, {"codes": listed}))


async def create_code(
    request: web.Request, principal: Principal, body: CreateEnrollmentCode
) -> web.Response:
    issued = await request.app[SERVICES].devices.issue_enrollment_code(
        principal.tenant_id, body.user_id, actor=f"user:{principal.user_id}",
        max_uses=body.max_uses, ttl=body.expires_in, label=body.label,
    )
    created = {
        **issued.info, "code": issued.code,
        "command": enroll_command(public_url(request), issued.code),
    }
    return reply(shape(EnrollmentCodeCreated, created), status=201)


async def revoke_code(request: web.Request, principal: Principal) -> web.Response:
    revoked = await request.app[SERVICES].devices.revoke_code(
        principal.tenant_id, request.match_info["code_id"], actor=f"user:{principal.user_id}"
    )
    return reply(shape(EnrollmentCodeInfo, revoked))
