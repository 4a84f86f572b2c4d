"""Property-based fuzzing of every route from the OpenAPI document (schemathesis), on both
databases: whatever a caller sends, the broker answers below 500 and logs no traceback.

Each operation gets a few examples that fit its schema and a few that break it (deterministic:
`derandomize`, so a failure reproduces), sent with a valid credential of the kind the route
takes (a device's token, an admin's token, nothing for public routes), so the fuzzing gets
past authentication into the handlers. Every reply is recorded for the suite-wide contract
check too (tests/support/contract.py). Two routes are steered: the storage routes always name
the suite's own S3 endpoint, so the self-check never probes a host on the internet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.generation.case import Case

from broker.web.openapi import document
from broker.web.routes import ROUTES, Route
from tests.identity.people import make_person, sign_in
from tests.support import contract
from tests.support.api import Api, enroll, make_tenant, start_recording
from tests.support.broker import BrokerProcess
from tests.support.s3 import S3Endpoint

SCHEMA = schemathesis.openapi.from_dict(document(ROUTES))
EXAMPLES = 4  # per operation and generation mode
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
# Ending the admin's session (or all of them) would leave the other routes unauthenticated
OWN_SESSION = {"/api/v1/auth/logout", "/api/v1/auth/sign-out-everywhere", "/logout"}


@dataclass
class Credentials:
    device: str  # an enrolled device with a recording
    admin: str  # an admin of the same tenant (every user route is open to an admin)
    ending: str  # another admin's token, for the routes that end the caller's session
    s3_url: str
    http: requests.Session

    def token(self, route: Route) -> str | None:
        if route.auth in ("device", "device_or_user"):
            return self.device
        if route.auth == "user":
            return self.ending if route.path in OWN_SESSION else self.admin
        return None


@pytest.fixture(scope="module")
def credentials(broker: BrokerProcess, s3_endpoint: S3Endpoint) -> Credentials:
    api = Api(broker.url)
    tenant = make_tenant(broker, s3_endpoint)
    device = enroll(api, broker, tenant)
    start_recording(api, device)
    admin, ending = (sign_in(api, make_person(broker, tenant, "admin")) for _ in range(2))
    return Credentials(
        device.access_token, admin.access_token, ending.access_token, s3_endpoint.url,
        requests.Session(),
    )


def has_input(route: Route) -> bool:
    """Whether the route takes anything a negative example could break (a body, a path id)."""
    return route.request is not None or "{" in route.path


# Every route with examples that fit; those that take input, with examples that break it too
RUNS = [
    pytest.param(route, mode, id=f"{mode.value}-{route.method} {route.path}")
    for route in ROUTES
    if route.path != "/api/openapi.json"
    for mode in GenerationMode
    if mode is GenerationMode.POSITIVE or has_input(route)
]


@pytest.mark.parametrize(("route", "mode"), RUNS)
def test_no_request_gets_a_5xx_or_a_traceback(
    route: Route, mode: GenerationMode, credentials: Credentials, broker: BrokerProcess
) -> None:
    operation = SCHEMA[route.path][route.method]
    token = credentials.token(route)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    logged = len(broker.log_text())
    seen: list[str] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @FUZZ
    def fuzz(case: Case[Any]) -> None:
        if route.path == "/api/v1/admin/storage" and isinstance(case.body, dict):
            case.body["endpoint_url"] = credentials.s3_url
        response = case.call(
            base_url=broker.url, session=credentials.http, headers=headers, timeout=60,
            allow_redirects=False,
        )
        url = str(response.request.url)
        kind = response.headers.get("content-type") or response.headers.get("Content-Type")
        contract.RECORDER.record(
            route.method, url, response.status_code, (kind or [""])[0], response.content
        )
        seen.append(f"{response.status_code}")
        assert response.status_code < 500, (
            f"{case.method} {url} {case.body!r:.300} → {response.status_code} "
            f"{response.content[:300]!r}"
        )

    fuzz()
    assert seen, "no example was sent"
    assert "Traceback" not in broker.log_text()[logged:], broker.log_text()[logged:][-3000:]
