"""The suite-wide reply check catches a reply that drifted from its model, and passes one
that matches (tests/support/contract.py)."""

from __future__ import annotations

import json
from typing import Any

from broker.web.openapi import document
from broker.web.routes import ROUTES
from tests.support.contract import Exchange, violations

DOC = document(ROUTES)
JSON = "application/json; charset=utf-8"


def exchange(method: str, path: str, status: int, body: Any, kind: str = JSON) -> Exchange:
    return Exchange(method, path, status, kind, json.dumps(body).encode())


BEAT = {"received_at": "2030-01-01T00:00:00Z", "interval": 60, "policy": {"fps": 2.0}}


def test_replies_that_match_their_models_pass() -> None:
    good = [
        exchange("GET", "/healthz", 200, {"status": "ok"}),
        exchange("POST", "/api/v1/devices/heartbeat", 200, BEAT),
        exchange("POST", "/api/v1/recordings/abc/segments/3/complete", 200, {"state": "verified"}),
        exchange("POST", "/api/v1/recordings", 400, {"error": "invalid_field", "message": "x"}),
        exchange("GET", "/no/such/route", 404, {"error": "not_found", "message": "Not Found"}),
        Exchange("GET", "/signin", 200, "text/html; charset=utf-8", b"<html></html>"),
    ]
    assert violations(DOC, good) == []


def test_a_drifted_reply_fails() -> None:
    drifted = [
        # a policy value outside its range, a missing field, an undeclared status, a wrong
        # error code, HTML where JSON is declared
        exchange("POST", "/api/v1/devices/heartbeat", 200, {**BEAT, "policy": {"fps": 0}}),
        exchange("POST", "/api/v1/recordings", 201, {}),
        exchange("POST", "/api/v1/recordings", 200, {"recording_id": "r"}),
        exchange("POST", "/api/v1/recordings", 400, {"error": "oops", "message": "x"}),
        Exchange("GET", "/healthz", 200, "text/html", b"<html></html>"),
    ]
    found = violations(DOC, drifted)
    assert len(found) == len(drifted), found
