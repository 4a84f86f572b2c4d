"""The API description is served and covers every route of the route table."""

from __future__ import annotations

from typing import Any

from openapi_spec_validator import validate

from broker.web.openapi import document
from broker.web.routes import ROUTES
from shared.keys import SEQ_MAX
from shared.wire import MAX_GAP_SEQS
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


def test_the_document_is_generated_from_the_models_with_their_limits(api: Api) -> None:
    """What the hand-written document had drifted on now comes from the models themselves."""
    served = api.call("GET", "/api/openapi.json").body
    generated = document(ROUTES)
    assert served["components"] == generated["components"]
    assert served["paths"] == generated["paths"]
    schemas = served["components"]["schemas"]

    def field(model: str, name: str) -> dict[str, Any]:
        prop: dict[str, Any] = schemas[model]["properties"][name]
        return next((s for s in prop.get("anyOf", []) if s.get("type") != "null"), prop)

    assert field("Heartbeat", "settings") == {"$ref": "#/components/schemas/RunSettings"}
    assert set(schemas["RunSettings"]["properties"]) == {
        "fps", "segment_seconds", "idle_seconds", "quality"
    }
    seqs = field("GapReport", "seqs")
    assert seqs["maxItems"] == MAX_GAP_SEQS
    assert seqs["items"] == {"type": "integer", "minimum": 0, "maximum": SEQ_MAX}
    for model, name in (
        ("RefreshRequest", "refresh_token"), ("MfaRequest", "challenge"), ("MfaRequest", "code"),
        ("LoginRequest", "tenant"), ("EnrollRequest", "code"),
    ):
        assert isinstance(field(model, name).get("maxLength"), int), (model, name)
    # each route's request and replies name the models of the route table
    for route in ROUTES:
        operation = served["paths"][route.path][route.method.lower()]
        if route.request is not None:
            ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/" + route.request.__name__)
        for status, model in route.responses.items():
            if model is not None:
                content = operation["responses"][str(status)]["content"]["application/json"]
                assert content["schema"]["$ref"].endswith("/" + model.__name__)
