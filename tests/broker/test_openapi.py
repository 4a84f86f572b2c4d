"""The API description is served and covers every route of the route table."""

from __future__ import annotations

from openapi_spec_validator import validate

from broker.web.routes import ROUTES
from tests.support.api import Api


def test_openapi_document_is_valid_and_lists_every_route(api: Api) -> None:
    reply = api.call("GET", "/api/openapi.json")

    assert reply.status == 200
    validate(reply.body)
    served = {(m.upper(), p) for p, ops in reply.body["paths"].items() for m in ops}
    assert served == {(r.method, r.path) for r in ROUTES}


def test_every_reply_carries_the_security_headers(api: Api) -> None:
    for reply in (api.call("GET", "/healthz"), api.call("GET", "/no-such-page")):
        assert reply.headers["Cache-Control"] == "no-store"
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
        assert reply.headers["Referrer-Policy"] == "no-referrer"
        assert "default-src 'none'" in reply.headers["Content-Security-Policy"]
