"""The admin's people pages: `/admin/people` (the list, the invitation form, each row's
actions) and `/admin/people/{user_id}` (role, deactivation, 2FA reset, who watches whom).

Each action is a plain form (the session's CSRF token in `csrf_token`, checked by the route
guard) calling the same service as its API route. A change answers with a redirect to the
page it came from, which says what was done; a refusal renders that page again with the
reason (the status of the refusal, e.g. 409 for the last admin), keeping what was typed. An
invitation's link is shown once, on the page that answers the invitation form.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from broker.devices.caps import MAX_DEVICE_CAP
from broker.errors import BrokerError, InvalidInput
from broker.identity import Principal, Role
from broker.services import Services
from broker.web.appkeys import SERVICES
from broker.web.links import invite_url
from broker.web.pages.forms import FORM_TYPES, read_form
from broker.web.pages.html import page, top_bar
from broker.web.pages.signin import see_other
from shared.wire import parse_timestamp

LIST = "/admin/people"
ROLES = [r.value for r in Role]
# What the page says after each change (`?done=`); anything else says nothing.
DONE = {
    "role": "The role is changed.",
    "name": "The name is changed.",
    "device_cap": "The device cap is changed.",
    "deactivated": "Deactivated: their sessions and devices have ended.",
    "reactivated": "Reactivated.",
    "mfa_reset": "Two-factor authentication is reset: they set it up again at their next "
    "sign-in, and their sessions have ended.",
    "assigned": "Assigned.",
    "unassigned": "Unassigned.",
}
Form = dict[str, str]


async def _form(request: web.Request) -> Form:
    """The posted fields (none when the body is not a form: each action says what it misses)."""
    if request.content_type not in FORM_TYPES:
        return {}
    return await read_form(request)


def _at(value: str | None) -> datetime | None:
    """A service's timestamp as the templates' `moment` takes it (the viewer's zone)."""
    return parse_timestamp(value) if value else None


def _row(person: dict[str, Any]) -> dict[str, Any]:
    """A person as the pages show them."""
    if person["mfa_reset_pending"]:
        mfa = "2FA reset pending"
    elif person["totp_enrolled_at"]:
        mfa = "enrolled"
    else:
        mfa = "not enrolled yet"
    return {
        **person, "mfa": mfa, "enrolled": _at(person["totp_enrolled_at"]),
        "last_sign_in": _at(person["last_sign_in_at"]), "created": _at(person["created_at"]),
    }


async def _list_page(
    request: web.Request,
    principal: Principal,
    *,
    status: int = 200,
    error: str = "",
    invited: dict[str, Any] | None = None,
    typed: Form | None = None,
) -> web.Response:
    people = await request.app[SERVICES].people.list_people(principal.tenant_id)
    typed = typed or {}
    return page(
        request, "admin_people.html", title="People", top=await top_bar(request, principal),
        status=status, people=[_row(p) for p in people], roles=ROLES, error=error,
        done=DONE.get(request.query.get("done", ""), ""), invited=invited,
        email=typed.get("email", "")[:320], role=typed.get("role", Role.EMPLOYEE),
        name=typed.get("name", "")[:200],
    )


async def people_page(request: web.Request, principal: Principal) -> web.Response:
    return await _list_page(request, principal)


async def invite(request: web.Request, principal: Principal) -> web.Response:
    """The invitation form: the link is on the page that answers it, and nowhere else."""
    form = await _form(request)
    try:
        invited = await request.app[SERVICES].invitations.invite(
            principal.tenant_id, _field(form, "email"), _field(form, "role"),
            actor=f"user:{principal.user_id}", name=form.get("name"),
        )
    except BrokerError as exc:
        return await _list_page(
            request, principal, status=exc.status, error=exc.message, typed=form
        )
    shown = {
        "email": invited.email, "role": invited.role, "url": invite_url(request, invited.token),
        "name": form.get("name", "").strip(),
        "expires": invited.expires_at, "replaced": invited.replaced,
    }
    return await _list_page(request, principal, invited=shown)


def _field(form: Form, name: str) -> str:
    value = form.get(name, "").strip()
    if not value:
        raise InvalidInput(f"{name} is required")
    return value


async def _person_page(
    request: web.Request, principal: Principal, *, status: int = 200, error: str = ""
) -> web.Response:
    user_id = request.match_info["user_id"]
    services = request.app[SERVICES]
    person = _row(await services.people.get(principal.tenant_id, user_id))
    everyone = await services.people.list_people(principal.tenant_id)
    # whom this person may be assigned to: managers for an employee, employees for a manager
    counterpart = {Role.EMPLOYEE: Role.MANAGER, Role.MANAGER: Role.EMPLOYEE}.get(person["role"])
    linked = {p["user_id"] for p in person["managers"] + person["employees"]}
    choices = [
        p for p in everyone
        if p["role"] == counterpart and p["user_id"] not in linked
        and p["state"] != "deactivated"
    ]
    return page(
        request, "admin_people_person.html", title=person["display_name"] or person["email"],
        top=await top_bar(request, principal), status=status, person=person, roles=ROLES,
        error=error, done=DONE.get(request.query.get("done", ""), ""), choices=choices,
        is_self=user_id == principal.user_id,
        cap=await services.devices.cap_of(principal.tenant_id, user_id),
    )


async def person_page(request: web.Request, principal: Principal) -> web.Response:
    return await _person_page(request, principal)


# An action on the person of the path: (services, tenant, user id, form, actor) → what is done
Action = Callable[[Services, str, str, Form, str], Awaitable[str]]


async def _act(request: web.Request, principal: Principal, action: Action) -> web.Response:
    user_id = request.match_info["user_id"]
    services = request.app[SERVICES]
    person = await services.people.get(principal.tenant_id, user_id)  # 404 before the form
    form = await _form(request)
    back_to_list = form.get("return_to") == "list"
    try:
        done = await action(
            services, principal.tenant_id, user_id, form, f"user:{principal.user_id}"
        )
    except BrokerError as exc:
        if back_to_list:  # the list says whom it was about
            named = exc.message if person["email"] in exc.message else (
                f"{person['email']}: {exc.message}"
            )
            return await _list_page(request, principal, status=exc.status, error=named)
        return await _person_page(request, principal, status=exc.status, error=exc.message)
    return see_other(f"{LIST}?done={done}" if back_to_list else f"{LIST}/{user_id}?done={done}")


async def _set_role(services: Services, tenant: str, user_id: str, form: Form, actor: str) -> str:
    await services.people.set_role(tenant, user_id, _field(form, "role"), actor=actor)
    return "role"


async def _set_name(services: Services, tenant: str, user_id: str, form: Form, actor: str) -> str:
    await services.people.set_name(tenant, user_id, form.get("name", ""), actor=actor)
    return "name"


async def _set_device_cap(
    services: Services, tenant: str, user_id: str, form: Form, actor: str
) -> str:
    raw = form.get("device_cap", "").strip()
    if raw and not (raw.isascii() and raw.isdigit() and len(raw) <= 5
                    and int(raw) <= MAX_DEVICE_CAP):
        raise InvalidInput(f"device_cap must be a whole number from 0 to {MAX_DEVICE_CAP}, "
                           "or empty for the organisation's cap")
    await services.devices.set_cap(
        tenant, user_id=user_id, cap=int(raw) if raw else None, actor=actor
    )
    return "device_cap"


async def _deactivate(services: Services, tenant: str, user_id: str, form: Form, actor: str) -> str:
    await services.people.deactivate(tenant, user_id, actor=actor)
    return "deactivated"


async def _reactivate(services: Services, tenant: str, user_id: str, form: Form, actor: str) -> str:
    await services.people.reactivate(tenant, user_id, actor=actor)
    return "reactivated"


async def _reset_mfa(services: Services, tenant: str, user_id: str, form: Form, actor: str) -> str:
    await services.people.reset_mfa(tenant, user_id, actor=actor)
    return "mfa_reset"


async def _pair(services: Services, tenant: str, user_id: str, form: Form) -> dict[str, str]:
    """The manager and the employee: this person and the one the form names (`other`)."""
    other = _field(form, "other")
    me = await services.people.get(tenant, user_id)
    if me["role"] == Role.MANAGER:
        return {"manager_id": user_id, "employee_id": other}
    return {"manager_id": other, "employee_id": user_id}


async def _assign(services: Services, tenant: str, user_id: str, form: Form, actor: str) -> str:
    await services.accounts.assign(tenant, **await _pair(services, tenant, user_id, form),
                                   actor=actor)
    return "assigned"


async def _unassign(services: Services, tenant: str, user_id: str, form: Form, actor: str) -> str:
    await services.people.unassign(tenant, **await _pair(services, tenant, user_id, form),
                                   actor=actor)
    return "unassigned"


def _handler(action: Action) -> Callable[[web.Request, Principal], Awaitable[web.Response]]:
    async def handler(request: web.Request, principal: Principal) -> web.Response:
        return await _act(request, principal, action)

    return handler


# The forms' routes (`broker.web.routes`), one an action
set_role = _handler(_set_role)
set_name = _handler(_set_name)
set_device_cap = _handler(_set_device_cap)
deactivate = _handler(_deactivate)
reactivate = _handler(_reactivate)
reset_mfa = _handler(_reset_mfa)
assign = _handler(_assign)
unassign = _handler(_unassign)
