"""Every route of the route table, called by every kind of caller it must refuse.

Built from `broker.web.routes.ROUTES`, so a new route is covered without editing this file
(a new path parameter or request body needs a value below, and the test says so).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from broker.db.engine import create_engine
from broker.db.schema import metadata
from broker.web.routes import ROUTES, Route
from tests.identity.people import Org
from tests.support.api import Reply, now_iso, random_segment, settled
from tests.support.broker import BrokerProcess
from tests.support.s3 import S3Endpoint

GUARDED = [r for r in ROUTES if r.auth != "public"]
# Routes that end the caller's own session go last, so the outsider's token lives until then.
ENDS_SESSION = ("/logout", "/sign-out-everywhere")
ORDERED = sorted(GUARDED, key=lambda r: r.path.endswith(ENDS_SESSION))


# Rows of org's tenant that only some routes' paths name, made before any test runs.
MADE: dict[str, str] = {}


@pytest.fixture(scope="module", autouse=True)
def _org_rows(org: Org) -> None:
    made = org.api.call(
        "POST", "/api/v1/admin/enrollment-codes", {"user_id": org.employee.user_id},
        token=org.admin.access_token,
    )
    assert made.status == 201, made.body
    MADE["code_id"] = made.body["code_id"]


def path_of(route: Route, org: Org) -> str:
    values = {
        "recording_id": org.recording_id,
        "seq": "0",
        "user_id": org.employee.user_id,
        "device_id": org.device.device_id,
        "day": "2030-01-02",
        **MADE,
    }

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            pytest.fail(f"{route.path}: give the matrix a value for {{{name}}}")
        return values[name]

    return re.sub(r"{(\w+)}", fill, route.path)


# The fields each form route (`route.form`: a page's HTML form) is sent: a well-formed form, so
# that what a caller meets is the guard's answer, not a complaint about the body. "{employee}"
# and "{manager}" stand for org's employee and manager.
FORMS: dict[str, dict[str, str]] = {
    "/logout": {},
    "/admin/organisation": {"time_zone": "Europe/Berlin"},
    "/admin/devices/{device_id}/revoke": {},
    "/admin/enrollment": {"user_id": "{employee}", "max_uses": "1", "hours": "1"},
    "/admin/enrollment/{code_id}/revoke": {},
    "/admin/policy": {"fps": "2"},
    "/admin/storage": {"mode": "keys"},  # + the storage of the caller's own tenant (body_of)
    "/admin/storage/check": {},
    "/admin/people/invite": {"email": "matrix-invitee@example.test", "role": "employee"},
    "/admin/people/{user_id}/role": {"role": "manager"},
    "/admin/people/{user_id}/name": {"name": "Matrix Name"},
    "/admin/people/{user_id}/device-cap": {"device_cap": "5"},
    "/admin/people/{user_id}/deactivate": {},
    "/admin/people/{user_id}/reactivate": {},
    "/admin/people/{user_id}/reset-2fa": {},
    "/admin/people/{user_id}/assign": {"other": "{manager}"},
    "/admin/people/{user_id}/unassign": {"other": "{manager}"},
}


class Form(dict[str, str]):
    """A form body (sent url-encoded), as opposed to a JSON one."""


def call(org: Org, route: Route, path: str, body: Any, token: str | None = None) -> Reply:
    if isinstance(body, Form):
        return org.api.call(
            route.method, path, token=token, body=urlencode(body).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    return org.api.call(route.method, path, body, token=token)


def storage_of(s3: S3Endpoint) -> dict[str, Any]:
    """A complete storage set-up for the caller's own tenant: it must never touch org's."""
    return {
        "bucket": s3.create_bucket(), "region": s3.region, "endpoint_url": s3.url,
        "prefix": "matrix", "access_key_id": s3.access_key_id,
        "secret_access_key": s3.secret_access_key, "accept_risk": True,
    }


def body_of(route: Route, org: Org, s3: S3Endpoint) -> Any:
    if route.form:
        if route.path not in FORMS:
            pytest.fail(f"{route.path}: give the matrix the fields of its form")
        employee = org.employee.user_id
        fields = {k: v.replace("{employee}", employee) for k, v in FORMS[route.path].items()}
        if route.path == "/admin/storage":
            storage = storage_of(s3)
            fields |= {k: str(v) for k, v in storage.items() if k != "accept_risk"}
            fields["accept_risk"] = "1"
        return Form(fields)
        employee, manager = org.employee.user_id, org.manager.user_id
        return Form({
            k: v.replace("{employee}", employee).replace("{manager}", manager)
            for k, v in FORMS[route.path].items()
        })
    model = route.request.__name__ if route.request is not None else None
    if model == "StorageRequest":
        return storage_of(s3)
    bodies: dict[str | None, Any] = {
        None: None,
        "StartRecording": {"started_at": now_iso()},
        "UploadRequest": random_segment(1024).declaration(),
        "RegisterDevice": {"name": "matrix"},
        "Assignment": {"manager_id": org.manager.user_id, "employee_id": org.employee.user_id},
        "GapReport": {"seqs": [0], "reason": "refused"},
        "Heartbeat": {"state": "recording", "spool_bytes": 0, "spool_segments": 0, "errors": 0},
        "PolicyPatch": {"fps": 2, "segment_seconds": None},
        "OrganisationChange": {"time_zone": "Europe/Berlin"},
        "CreateEnrollmentCode": {"user_id": org.employee.user_id, "max_uses": 2},
        "InviteRequest": {"email": "matrix-invited@example.test", "role": "employee"},
        "RoleChange": {"role": "manager"},
        "NameChange": {"name": "Matrix Name"},
        "DeviceCapChange": {"device_cap": 5},
    }
    if model not in bodies:
        pytest.fail(f"{route.path}: give the matrix a body for {model}")
    return bodies[model]


def tenant_rows(database_url: str, tenant_id: str) -> dict[str, list[tuple[Any, ...]]]:
    async def read() -> dict[str, list[tuple[Any, ...]]]:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                return {
                    t.name: sorted(
                        (tuple(r) for r in (await conn.execute(
                            select(*settled(t)).where(t.c.tenant_id == tenant_id)
                        )).all()),
                        key=repr,
                    )
                    for t in metadata.sorted_tables
                    if "tenant_id" in t.c
                }
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_nobody_without_a_token_gets_in(s3_endpoint: S3Endpoint, org: Org) -> None:
    for route in ORDERED:
        reply = call(org, route, path_of(route, org), body_of(route, org, s3_endpoint))
        assert reply.status == 401, f"{route.method} {route.path}"
        assert reply.body["error"] in {"unauthenticated", "invalid_token"}


def test_wrong_kind_of_caller_and_missing_role_are_refused(
    s3_endpoint: S3Endpoint, org: Org
) -> None:
    people = {"employee": org.employee, "manager": org.manager, "admin": org.admin}
    checked = 0
    for route in ORDERED:
        path, body = path_of(route, org), body_of(route, org, s3_endpoint)
        if route.auth == "user":
            reply = call(org, route, path, body, token=org.device.access_token)
            assert reply.status == 401, f"device on {route.method} {route.path}"
            for role, person in people.items():
                if route.roles and role not in route.roles:
                    reply = call(org, route, path, body, token=person.access_token)
                    assert reply.status == 403, f"{role} on {route.method} {route.path}"
                    checked += 1
        if route.auth in ("device", "refresh_cookie"):  # a person's bearer token is neither
            for role, person in people.items():
                reply = call(org, route, path, body, token=person.access_token)
                assert reply.status == 401, f"{role} on {route.method} {route.path}"
                checked += 1
    assert checked > 0


def test_no_route_reads_or_writes_across_tenants(
    s3_endpoint: S3Endpoint, org: Org, broker: BrokerProcess
) -> None:
    before = tenant_rows(broker.database_url, org.tenant.tenant_id)
    secrets_of_a = {
        org.tenant.tenant_id, org.recording_id, org.other_recording_id, org.employee.user_id,
        org.other_employee.user_id, org.manager.user_id, org.admin.user_id, org.device.device_id,
    }
    for caller, token in (
        ("device of another tenant", org.outsider_device.access_token),
        ("admin of another tenant", org.outsider.access_token),
    ):
        for route in ORDERED:
            body = body_of(route, org, s3_endpoint)
            reply = call(org, route, path_of(route, org), body, token=token)
            where = f"{caller}: {route.method} {route.path} -> {reply.status}"
            assert reply.status < 500, where
            if reply.status < 300:
                leaked = [s for s in secrets_of_a if s.encode() in reply.raw]
                assert not leaked, where
            elif route.form:  # a form done sends the browser back to its page
                assert reply.status in {303, 401, 403, 404}, where
            else:
                assert reply.status in {401, 403, 404}, where

    assert tenant_rows(broker.database_url, org.tenant.tenant_id) == before
