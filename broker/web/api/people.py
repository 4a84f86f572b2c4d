"""HTTP handlers for the tenant admin's people: the list, invitations (their acceptance is
public: the link's token is the credential), roles, deactivation, 2FA resets, and who
watches whom. Parse, call the service, reply."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from broker.auth.invites import Invited
from broker.identity import Principal
from broker.web.appkeys import SERVICES
from broker.web.http import reply, shape
from broker.web.links import invite_url
from shared.api import (
    AcceptInvitation,
    Assignment,
    Assignments,
    DeviceCap,
    DeviceCapChange,
    Invitation,
    InvitationAccepted,
    InviteRequest,
    NameChange,
    People,
    Person,
    RoleChange,
    Unassigned,
)
from shared.wire import format_timestamp


def _actor(principal: Principal) -> str:
    return f"user:{principal.user_id}"


def invitation(request: web.Request, invited: Invited) -> Invitation:
    return shape(Invitation, {
        "user_id": invited.user_id, "email": invited.email, "role": invited.role,
        "state": "invited", "invite_url": invite_url(request, invited.token),
        "expires_at": format_timestamp(invited.expires_at), "replaced": invited.replaced,
    })


async def list_people(request: web.Request, principal: Principal) -> web.Response:
    listed = await request.app[SERVICES].people.list_people(principal.tenant_id)
    return reply(shape(People, {"people": listed}))


async def get_person(request: web.Request, principal: Principal) -> web.Response:
    found = await request.app[SERVICES].people.get(
        principal.tenant_id, request.match_info["user_id"]
    )
    return reply(shape(Person, found))


async def invite(request: web.Request, principal: Principal, body: InviteRequest) -> web.Response:
    invited = await request.app[SERVICES].invitations.invite(
        principal.tenant_id, body.email, body.role, actor=_actor(principal), name=body.name
    )
    return reply(invitation(request, invited), status=200 if invited.replaced else 201)


async def accept(request: web.Request, body: AcceptInvitation) -> web.Response:
    accepted = await request.app[SERVICES].invitations.accept(body.token, body.password)
    return reply(InvitationAccepted(
        user_id=accepted.user_id, email=accepted.email, tenant=accepted.tenant, state="active"
    ))


async def set_role(request: web.Request, principal: Principal, body: RoleChange) -> web.Response:
    changed = await request.app[SERVICES].people.set_role(
        principal.tenant_id, request.match_info["user_id"], body.role, actor=_actor(principal)
    )
    return reply(shape(Person, changed))


async def set_name(request: web.Request, principal: Principal, body: NameChange) -> web.Response:
    changed = await request.app[SERVICES].people.set_name(
        principal.tenant_id, request.match_info["user_id"], body.name, actor=_actor(principal)
    )
    return reply(shape(Person, changed))


async def device_cap(request: web.Request, principal: Principal) -> web.Response:
    cap = await request.app[SERVICES].devices.cap_of(
        principal.tenant_id, request.match_info["user_id"]
    )
    return reply(shape(DeviceCap, cap))


async def set_device_cap(
    request: web.Request, principal: Principal, body: DeviceCapChange
) -> web.Response:
    devices, user_id = request.app[SERVICES].devices, request.match_info["user_id"]
    await devices.set_cap(
        principal.tenant_id, user_id=user_id, cap=body.device_cap, actor=_actor(principal)
    )
    return reply(shape(DeviceCap, await devices.cap_of(principal.tenant_id, user_id)))


# The person's own state changes: (tenant, user id, *, actor) → the person as they are now.
PersonChange = Callable[..., Awaitable[dict[str, Any]]]


async def _changed(
    request: web.Request, principal: Principal, change: PersonChange
) -> web.Response:
    changed = await change(
        principal.tenant_id, request.match_info["user_id"], actor=_actor(principal)
    )
    return reply(shape(Person, changed))


async def deactivate(request: web.Request, principal: Principal) -> web.Response:
    return await _changed(request, principal, request.app[SERVICES].people.deactivate)


async def reactivate(request: web.Request, principal: Principal) -> web.Response:
    return await _changed(request, principal, request.app[SERVICES].people.reactivate)


async def reset_mfa(request: web.Request, principal: Principal) -> web.Response:
    return await _changed(request, principal, request.app[SERVICES].people.reset_mfa)


async def list_assignments(request: web.Request, principal: Principal) -> web.Response:
    listed = await request.app[SERVICES].people.assignments(principal.tenant_id)
    return reply(shape(Assignments, {"assignments": listed}))


async def unassign(request: web.Request, principal: Principal, body: Assignment) -> web.Response:
    removed = await request.app[SERVICES].people.unassign(
        principal.tenant_id, manager_id=body.manager_id, employee_id=body.employee_id,
        actor=_actor(principal),
    )
    return reply(Unassigned(
        manager_id=body.manager_id, employee_id=body.employee_id, removed=removed
    ))
