"""The tenant admin's people over the API, on SQLite and PostgreSQL: invitations and their
acceptance, roles, deactivation, 2FA resets, the last admin, who watches whom; and who is
refused (non-admins, another tenant's ids, invited and deactivated people at sign-in)."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import urlencode, urlsplit

import pyotp
import pytest

from broker.services import Services
from broker.web.routes import ROUTES
from tests.broker.test_concurrency import parallel
from tests.identity.people import (
    Clock,
    Person,
    audit_entries,
    in_process,
    login,
    login_again,
    make_person,
    mfa,
    sign_in,
)
from tests.support.api import PASSWORD, Api, Reply, Tenant, enroll, enrollment_code, make_tenant
from tests.support.broker import BrokerProcess
from tests.support.s3 import S3Endpoint

HEARTBEAT = {"state": "recording", "spool_bytes": 0, "spool_segments": 0, "errors": 0}
PEOPLE_ROUTES = [
    r for r in ROUTES
    if r.path.startswith(("/api/v1/admin/people", "/api/v1/admin/assignments", "/admin/people"))
]


@pytest.fixture(scope="module")
def admin(api: Api, broker: BrokerProcess, tenant: Tenant) -> Person:
    return sign_in(api, make_person(broker, tenant, "admin"))


def new_email() -> str:
    return f"invitee-{secrets.token_hex(5)}@example.test"


def invite(api: Api, admin: Person, email: str, role: str = "manager") -> Reply:
    return api.call(
        "POST", "/api/v1/admin/people/invite", {"email": email, "role": role},
        token=admin.access_token,
    )


def token_in(url: str) -> str:
    path = urlsplit(url).path
    assert path.startswith("/invite/"), url
    return path.removeprefix("/invite/")


def accept(api: Api, token: str, password: str = PASSWORD) -> Reply:
    return api.call("POST", "/api/v1/invitations/accept", {"token": token, "password": password})


def invited_person(
    api: Api, admin: Person, tenant: Tenant, role: str = "manager"
) -> tuple[Person, str]:
    """A person an admin invited (not accepted yet) and their link's token."""
    email = new_email()
    reply = invite(api, admin, email, role)
    assert reply.status == 201, reply.body
    return Person(tenant, reply.body["user_id"], email, role), token_in(reply.body["invite_url"])


def joined(api: Api, admin: Person, tenant: Tenant, role: str = "employee") -> Person:
    """A person invited, accepted and signed in (TOTP enrolled), with a bearer session."""
    person, token = invited_person(api, admin, tenant, role)
    assert accept(api, token).status == 200
    return sign_in(api, person)


def person_of(api: Api, admin: Person, user_id: str) -> dict[str, Any]:
    reply = api.call("GET", f"/api/v1/admin/people/{user_id}", token=admin.access_token)
    assert reply.status == 200, reply.body
    body: dict[str, Any] = reply.body
    return body


def act(api: Api, admin: Person, user_id: str, action: str, payload: Any = None) -> Reply:
    return api.call(
        "POST", f"/api/v1/admin/people/{user_id}/{action}", payload, token=admin.access_token
    )


def actions(broker: BrokerProcess, tenant: Tenant, target: str) -> list[str]:
    return [e.action for e in audit_entries(broker, tenant.tenant_id) if e.target == target]


def refused_like_a_wrong_password(reply: Reply, wrong: Reply) -> None:
    assert reply.status == 401, reply.body
    assert reply.body == wrong.body
    assert reply.body["error"] == "invalid_credentials"


# -- invitations -------------------------------------------------------------------------------


def test_an_invited_manager_sets_a_password_and_enrols_totp_at_sign_in(
    api: Api, broker: BrokerProcess, tenant: Tenant, admin: Person
) -> None:
    email = new_email()
    reply = invite(api, admin, email, "manager")
    assert reply.status == 201, reply.body
    assert reply.body["state"] == "invited"
    assert reply.body["replaced"] is False
    assert reply.body["invite_url"].startswith(broker.url + "/invite/bri_")
    expires = datetime.fromisoformat(reply.body["expires_at"].replace("Z", "+00:00"))
    assert timedelta(days=6, hours=23) < expires - datetime.now(UTC) <= timedelta(days=7)
    user_id, token = reply.body["user_id"], token_in(reply.body["invite_url"])
    listed = {
        p["email"]: p for p in api.call(
            "GET", "/api/v1/admin/people", token=admin.access_token
        ).body["people"]
    }
    assert listed[email]["state"] == "invited"
    assert listed[email]["totp_enrolled_at"] is None
    assert listed[email]["last_sign_in_at"] is None

    opened = api.call("GET", f"/invite/{token}", headers={"Accept": "text/html"})
    assert opened.status == 200
    assert email.encode() in opened.raw
    assert tenant.name.encode() in opened.raw
    assert token.encode() not in broker.log_text().encode(), "the link's token is never logged"

    accepted = accept(api, token)
    assert accepted.status == 200, accepted.body
    assert accepted.body == {
        "user_id": user_id, "email": email, "tenant": tenant.name, "state": "active"
    }
    person = sign_in(api, Person(tenant, user_id, email, "manager"))  # enrols TOTP
    assert len(person.recovery_codes) == 10
    after = person_of(api, admin, user_id)
    assert (after["state"], after["role"]) == ("active", "manager")
    assert after["totp_enrolled_at"] is not None
    assert after["last_sign_in_at"] is not None
    assert actions(broker, tenant, user_id) == [
        "user.invite", "user.invite_accept", "auth.mfa_enroll"
    ]


def test_an_invitation_link_works_once_and_a_new_one_replaces_it(
    api: Api, tenant: Tenant, admin: Person
) -> None:
    person, first = invited_person(api, admin, tenant, "employee")
    again = invite(api, admin, person.email, "manager")
    assert again.status == 200, again.body
    assert again.body["replaced"] is True
    assert again.body["role"] == "manager"
    assert again.body["user_id"] == person.user_id
    second = token_in(again.body["invite_url"])

    old = accept(api, first)
    assert old.status == 400
    assert old.body["error"] == "invalid_token"
    assert "not valid" in old.body["message"]
    assert accept(api, second).status == 200
    used = accept(api, second, "another long enough passphrase")
    assert used.status == 400
    assert "used already" in used.body["message"]
    page = api.call("GET", f"/invite/{second}", headers={"Accept": "text/html"})
    assert page.status == 400
    assert b"used already" in page.raw
    assert login(api, person, "another long enough passphrase").status == 401
    assert login(api, person).status == 200, "the first password set stays"


def test_an_expired_invitation_is_refused_and_says_so(
    api: Api, broker: BrokerProcess, tenant: Tenant, admin: Person
) -> None:
    email = new_email()
    eight_days_ago = Clock(datetime.now(UTC) - timedelta(days=8))

    async def old_invitation(services: Services) -> str:
        invited = await services.invitations.invite(
            tenant.tenant_id, email, "employee", actor=f"user:{admin.user_id}"
        )
        return invited.token

    token = in_process(broker, eight_days_ago, old_invitation)
    refused = accept(api, token)
    assert refused.status == 400
    assert refused.body["error"] == "invalid_token"
    assert "expired" in refused.body["message"]
    assert "invite you again" in refused.body["message"]
    page = api.call("GET", f"/invite/{token}", headers={"Accept": "text/html"})
    assert page.status == 400
    assert b"expired" in page.raw
    assert b"password_again" not in page.raw, "no form for an expired invitation"
    # the admin invites again: a fresh link works
    fresh = invite(api, admin, email, "employee")
    assert fresh.status == 200
    assert fresh.body["replaced"] is True
    assert accept(api, token_in(fresh.body["invite_url"])).status == 200


def test_inviting_an_email_that_has_an_account_is_409_and_says_so(
    api: Api, tenant: Tenant, admin: Person
) -> None:
    for email in (admin.email, admin.email.upper()):
        reply = invite(api, admin, email)
        assert reply.status == 409, reply.body
        assert admin.email in reply.body["message"]
        assert "already" in reply.body["message"]
    bad = invite(api, admin, "not an email")
    assert bad.status == 400
    assert "email" in bad.body["message"]
    role = api.call(
        "POST", "/api/v1/admin/people/invite", {"email": new_email(), "role": "owner"},
        token=admin.access_token,
    )
    assert role.status == 400
    assert "role" in role.body["message"]


def test_an_invitation_takes_the_operators_password_rules(
    api: Api, tenant: Tenant, admin: Person
) -> None:
    _, token = invited_person(api, admin, tenant)
    for weak in ("short", "password1234"):
        refused = accept(api, token, weak)
        assert refused.status == 400, weak
        assert refused.body["error"] == "weak_password", weak
    assert accept(api, token).status == 200, "a refused password leaves the link open"


def test_invited_and_deactivated_people_cannot_sign_in_and_cannot_tell(
    api: Api, broker: BrokerProcess, tenant: Tenant, admin: Person
) -> None:
    invitee, _ = invited_person(api, admin, tenant)
    active = joined(api, admin, tenant)
    wrong = login(api, active, "not the password at all")
    refused_like_a_wrong_password(login(api, invitee), wrong)
    refused_like_a_wrong_password(login(api, invitee, "!invited"), wrong)

    assert act(api, admin, active.user_id, "deactivate").status == 200
    refused_like_a_wrong_password(login(api, active), wrong)
    failed = [
        e for e in audit_entries(broker, tenant.tenant_id)
        if e.action == "auth.login_failed" and e.target in (invitee.user_id, active.user_id)
    ]
    assert {e.details.get("state") for e in failed} == {"invited", "deactivated", None}


# -- roles, deactivation, 2FA reset ------------------------------------------------------------


def test_a_role_change_is_audited_and_drops_assignments_that_no_longer_fit(
    api: Api, broker: BrokerProcess, tenant: Tenant, admin: Person
) -> None:
    manager = joined(api, admin, tenant, "manager")
    employee = joined(api, admin, tenant, "employee")
    pair = {"manager_id": manager.user_id, "employee_id": employee.user_id}
    assert api.call(
        "POST", "/api/v1/admin/assignments", pair, token=admin.access_token
    ).status == 201
    assert [m["user_id"] for m in person_of(api, admin, employee.user_id)["managers"]] == [
        manager.user_id
    ]

    changed = act(api, admin, manager.user_id, "role", {"role": "employee"})
    assert changed.status == 200, changed.body
    assert changed.body["role"] == "employee"
    assert changed.body["employees"] == []
    assert person_of(api, admin, employee.user_id)["managers"] == []
    entry = [e for e in audit_entries(broker, tenant.tenant_id)
             if e.action == "user.role_set" and e.target == manager.user_id][-1]
    assert entry.details == {"from": "manager", "to": "employee", "assignments_removed": 1}
    assert entry.actor == f"user:{admin.user_id}"
    same = act(api, admin, manager.user_id, "role", {"role": "employee"})
    assert same.status == 200
    assert actions(broker, tenant, manager.user_id).count("user.role_set") == 1
    bad = act(api, admin, manager.user_id, "role", {"role": "root"})
    assert bad.status == 400
    assert "role" in bad.body["message"]
    # the old token names the old role: refused; a new sign-in carries the new one
    assert api.call("GET", "/api/v1/employees", token=manager.access_token).status == 401
    assert login_again(api, manager).status == 200


def test_deactivation_ends_sessions_devices_and_codes_at_once(
    api: Api, broker: BrokerProcess, tenant: Tenant, admin: Person
) -> None:
    person = joined(api, admin, tenant, "employee")
    device = enroll(api, broker, tenant, person.user_id)
    pending_code = enrollment_code(broker, tenant, person.user_id)
    assert api.call("GET", "/api/v1/employees", token=person.access_token).status == 200
    beat = api.call("POST", "/api/v1/devices/heartbeat", HEARTBEAT, token=device.access_token)
    assert beat.status == 200

    done = act(api, admin, person.user_id, "deactivate")
    assert done.status == 200, done.body
    assert done.body["state"] == "deactivated"
    assert api.call("GET", "/api/v1/employees", token=person.access_token).status == 401
    assert api.call(
        "POST", "/api/v1/auth/token", {"refresh_token": person.refresh_token}
    ).status == 401
    beat = api.call("POST", "/api/v1/devices/heartbeat", HEARTBEAT, token=device.access_token)
    assert beat.status == 401, "the device's access token is refused right after"
    assert api.call(
        "POST", "/api/v1/devices/token", {"refresh_token": device.refresh_token}
    ).status == 401
    enrolled = api.call(
        "POST", "/api/v1/devices/enroll", {"code": pending_code, "name": "after deactivation"}
    )
    assert enrolled.status == 401
    assert enrolled.body["error"] == "invalid_enrollment_code"
    listed = api.call("GET", "/api/v1/admin/devices", token=admin.access_token).body["devices"]
    assert next(d for d in listed if d["device_id"] == device.device_id)["revoked_at"]
    entry = [e for e in audit_entries(broker, tenant.tenant_id)
             if e.action == "user.deactivate" and e.target == person.user_id][-1]
    assert entry.details == {"sessions_ended": 1, "devices_revoked": 1}

    again = act(api, admin, person.user_id, "reactivate")
    assert again.status == 200
    assert again.body["state"] == "active"
    assert login_again(api, person).status == 200, "password and TOTP work as before"
    beat = api.call("POST", "/api/v1/devices/heartbeat", HEARTBEAT, token=device.access_token)
    assert beat.status == 401, "devices stay revoked"


def test_a_2fa_reset_forces_enrolment_and_the_old_totp_no_longer_works(
    api: Api, broker: BrokerProcess, tenant: Tenant, admin: Person
) -> None:
    person = joined(api, admin, tenant, "manager")
    old_secret = person.secret
    reset = act(api, admin, person.user_id, "reset-2fa")
    assert reset.status == 200, reset.body
    assert reset.body["mfa_reset_pending"] is True
    assert reset.body["totp_enrolled_at"] is None
    assert api.call("GET", "/api/v1/employees", token=person.access_token).status == 401
    assert "user.mfa_reset" in actions(broker, tenant, person.user_id)

    step = login(api, person)
    assert step.status == 200, step.body
    assert step.body["mfa"] == "enroll", step.body
    assert step.body["mfa_reset"] is True, "an app is told why, as the sign-in page says"
    new_secret = re.search(r"secret=([A-Z2-7]+)", step.body["provisioning_uri"])
    assert new_secret
    assert new_secret[1] != old_secret
    old_code = pyotp.TOTP(old_secret).now()
    refused = mfa(api, step.body["challenge"], old_code)
    assert refused.status == 401
    assert refused.body["error"] == "invalid_mfa_code"
    recovery = login(api, person)
    refused = mfa(api, recovery.body["challenge"], person.recovery_codes[0])
    assert refused.status == 401, "nor do the old recovery codes"

    step = login(api, person)  # each enrolment challenge comes with a secret of its own
    fresh = re.search(r"secret=([A-Z2-7]+)", step.body["provisioning_uri"])
    assert fresh
    person.secret, person.last_step = fresh[1], -1
    done = mfa(api, step.body["challenge"], person.next_code())
    assert done.status == 200
    assert len(done.body["recovery_codes"]) == 10
    after = person_of(api, admin, person.user_id)
    assert after["mfa_reset_pending"] is False
    assert after["totp_enrolled_at"] is not None
    assert "mfa_reset" not in login(api, person).body, "the next sign-in is a plain one"
    enrolled = [e for e in audit_entries(broker, tenant.tenant_id)
                if e.action == "auth.mfa_enroll" and e.target == person.user_id]
    assert enrolled[-1].details.get("after_reset") is True


def test_the_sign_in_page_tells_the_person_their_admin_reset_2fa(
    api: Api, tenant: Tenant, admin: Person
) -> None:
    person = joined(api, admin, tenant, "employee")

    def password_step() -> bytes:
        page = api.call("GET", "/signin")
        token = re.search(r"bucketreel_signin=([^;,\s]+)", page.headers["Set-Cookie"])
        assert token
        form = {"csrf_token": token[1], "tenant": tenant.name, "email": person.email,
                "password": PASSWORD}
        reply = api.call("POST", "/signin", body=urlencode(form).encode(), headers={
            "Content-Type": "application/x-www-form-urlencoded", "Accept": "text/html",
            "Cookie": f"bucketreel_signin={token[1]}",
        })
        assert reply.status == 200
        return reply.raw

    assert b"reset your two-factor" not in password_step()
    assert act(api, admin, person.user_id, "reset-2fa").status == 200
    told = password_step()
    assert b"Your admin reset your two-factor authentication" in told
    assert b'class="secret"' in told, "with the new key to enrol"
    listed = api.call("GET", "/admin/people", token=admin.access_token)
    assert b"2FA reset pending" in listed.raw


def test_an_invited_person_has_no_2fa_to_reset(api: Api, tenant: Tenant, admin: Person) -> None:
    invitee, _ = invited_person(api, admin, tenant)
    refused = act(api, admin, invitee.user_id, "reset-2fa")
    assert refused.status == 409
    assert "invitation" in refused.body["message"]


# -- the last admin ----------------------------------------------------------------------------


def test_the_last_active_admin_can_be_neither_demoted_nor_deactivated(
    api: Api, broker: BrokerProcess, s3_endpoint: S3Endpoint
) -> None:
    tenant = make_tenant(broker, s3_endpoint)
    only = sign_in(api, make_person(broker, tenant, "admin"))
    for action, payload in (("role", {"role": "manager"}), ("deactivate", None)):
        refused = act(api, only, only.user_id, action, payload)
        assert refused.status == 409, refused.body
        assert "last active admin" in refused.body["message"]
    page = api.call(
        "POST", f"/admin/people/{only.user_id}/deactivate", body=b"return_to=list",
        token=only.access_token,
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "text/html"},
    )
    assert page.status == 409
    assert b"last active admin" in page.raw, "the page says why"

    second, token = invited_person(api, only, tenant, "admin")
    assert act(api, only, only.user_id, "deactivate").status == 409, "an invitee is not active"
    assert accept(api, token).status == 200
    second = sign_in(api, second)
    demoted = act(api, second, only.user_id, "role", {"role": "manager"})
    assert demoted.status == 200
    assert demoted.body["role"] == "manager"
    refused = act(api, second, second.user_id, "deactivate")
    assert refused.status == 409, "the new admin is now the last one"
    assert person_of(api, second, second.user_id)["state"] == "active"


# -- who watches whom --------------------------------------------------------------------------


def test_assignments_are_listed_and_undone_from_either_side(
    api: Api, broker: BrokerProcess, tenant: Tenant, admin: Person
) -> None:
    manager = joined(api, admin, tenant, "manager")
    employees = [joined(api, admin, tenant, "employee") for _ in range(2)]
    for employee in employees:
        pair = {"manager_id": manager.user_id, "employee_id": employee.user_id}
        assert api.call(
            "POST", "/api/v1/admin/assignments", pair, token=admin.access_token
        ).status == 201
    watched = person_of(api, admin, manager.user_id)["employees"]
    assert sorted(e["user_id"] for e in watched) == sorted(e.user_id for e in employees)
    seen = api.call("GET", "/api/v1/employees", token=manager.access_token).body["employees"]
    assert {e["user_id"] for e in seen} == {e.user_id for e in employees}
    pairs = api.call("GET", "/api/v1/admin/assignments", token=admin.access_token).body
    mine = [p for p in pairs["assignments"] if p["manager_id"] == manager.user_id]
    assert {p["employee_email"] for p in mine} == {e.email for e in employees}

    first = {"manager_id": manager.user_id, "employee_id": employees[0].user_id}
    gone = api.call("POST", "/api/v1/admin/assignments/unassign", first, token=admin.access_token)
    assert gone.status == 200
    assert gone.body == {**first, "removed": True}
    again = api.call("POST", "/api/v1/admin/assignments/unassign", first, token=admin.access_token)
    assert again.status == 200
    assert again.body["removed"] is False
    assert actions(broker, tenant, employees[0].user_id).count("role.unassign") == 1
    seen = api.call("GET", "/api/v1/employees", token=manager.access_token).body["employees"]
    assert [e["user_id"] for e in seen] == [employees[1].user_id]

    # the employee's page form: unassign their manager (the same service)
    form = urlencode({"other": manager.user_id}).encode()
    page = api.call(
        "POST", f"/admin/people/{employees[1].user_id}/unassign", body=form,
        token=admin.access_token, headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert page.status == 303, page.raw
    assert page.headers["Location"] == f"/admin/people/{employees[1].user_id}?done=unassigned"
    assert person_of(api, admin, employees[1].user_id)["managers"] == []


# -- who is refused ----------------------------------------------------------------------------


def call_route(api: Api, method: str, path: str, token: str, body: Any) -> Reply:
    if path.startswith("/admin/") and method == "POST":
        return api.call(
            method, path, body=urlencode(body or {}).encode(), token=token,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    return api.call(method, path, body, token=token)


def bodies(target: str, other: str) -> dict[str, Any]:
    return {
        "InviteRequest": {"email": new_email(), "role": "employee"},
        "RoleChange": {"role": "admin"},
        "NameChange": {"name": "Someone Else"},
        "DeviceCapChange": {"device_cap": 7},
        "Assignment": {"manager_id": other, "employee_id": target},
    }


def test_managers_and_employees_get_403_on_every_admin_people_route(
    api: Api, tenant: Tenant, admin: Person
) -> None:
    assert len(PEOPLE_ROUTES) >= 15
    target = joined(api, admin, tenant, "employee")
    for role in ("manager", "employee"):
        caller = joined(api, admin, tenant, role)
        for route in PEOPLE_ROUTES:
            path = route.path.replace("{user_id}", target.user_id)
            body = bodies(target.user_id, caller.user_id).get(
                route.request.__name__ if route.request else "", None
            )
            if route.form:
                body = {"email": new_email(), "role": "admin", "other": caller.user_id}
            reply = call_route(api, route.method, path, caller.access_token, body)
            assert reply.status == 403, f"{role}: {route.method} {route.path} {reply.status}"
    assert person_of(api, admin, target.user_id)["state"] == "active"


def test_another_tenants_people_are_not_found(
    api: Api, broker: BrokerProcess, s3_endpoint: S3Endpoint, tenant: Tenant, admin: Person
) -> None:
    other_tenant = make_tenant(broker, s3_endpoint)
    other_admin = sign_in(api, make_person(broker, other_tenant, "admin"))
    theirs = joined(api, other_admin, other_tenant, "employee")
    their_manager = joined(api, other_admin, other_tenant, "manager")
    before = person_of(api, other_admin, theirs.user_id)
    checked = 0
    for route in PEOPLE_ROUTES:
        if "{user_id}" not in route.path and "assign" not in route.path:
            continue
        path = route.path.replace("{user_id}", theirs.user_id)
        body = bodies(theirs.user_id, their_manager.user_id).get(
            route.request.__name__ if route.request else "", None
        )
        if route.form:
            body = {"role": "admin", "other": their_manager.user_id}
        reply = call_route(api, route.method, path, admin.access_token, body)
        if route.path == "/api/v1/admin/assignments" and route.method == "GET":
            assert reply.status == 200
            assert theirs.user_id not in reply.raw.decode()
            continue
        assert reply.status == 404, f"{route.method} {route.path} {reply.status}"
        checked += 1
    assert checked >= 12
    assert person_of(api, other_admin, theirs.user_id) == before
    cap = api.call("GET", f"/api/v1/admin/people/{theirs.user_id}/device-cap",
                   token=other_admin.access_token)
    assert cap.body["device_cap"] is None, "their device cap was not set from outside"
    assert login_again(api, theirs).status == 200, "nothing of theirs changed"


# -- at once ------------------------------------------------------------------------------------


def test_two_admins_removing_each_other_at_once_leave_one_admin(
    broker: BrokerProcess, s3_endpoint: S3Endpoint
) -> None:
    """The count of active admins and the change are one step: of two admins demoting or
    deactivating each other in parallel, one wins and the other is refused."""
    api = Api(broker.url)
    for action, payload in (("deactivate", None), ("role", {"role": "employee"})) * 2:
        tenant = make_tenant(broker, s3_endpoint)
        a, b = (sign_in(api, make_person(broker, tenant, "admin")) for _ in range(2))
        replies = parallel([
            partial(act, Api(broker.url), a, b.user_id, action, payload),
            partial(act, Api(broker.url), b, a.user_id, action, payload),
        ])
        statuses = sorted(r.status for r in replies)
        assert statuses[0] == 200, [r.body for r in replies]
        assert statuses[1] in (401, 409), [r.body for r in replies]  # ended, or the last one
        winner = a if replies[0].status == 200 else b
        people = api.call("GET", "/api/v1/admin/people", token=winner.access_token)
        admins = [p for p in people.body["people"] if p["role"] == "admin"]
        assert [p["state"] for p in admins if p["user_id"] == winner.user_id] == ["active"]
        assert sum(p["state"] == "active" for p in admins) == 1


def test_an_invitation_accepted_in_parallel_works_once(
    api: Api, broker: BrokerProcess, tenant: Tenant, admin: Person
) -> None:
    person, token = invited_person(api, admin, tenant)
    replies = parallel([
        lambda n=n: accept(Api(broker.url), token, f"{PASSWORD} number {n}") for n in range(4)
    ])
    assert sorted(r.status for r in replies) == [200, 400, 400, 400], [r.body for r in replies]
    assert actions(broker, tenant, person.user_id).count("user.invite_accept") == 1
    winner = next(n for n, r in enumerate(replies) if r.status == 200)
    assert login(api, person, f"{PASSWORD} number {winner}").status == 200
