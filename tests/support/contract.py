"""Every reply the suite receives from a broker, held against the schema its route declares.

The API client (`tests.support.api.Api`) records each exchange: method, path, status, content
type and body. At the end of the session every one is checked against the OpenAPI document
the broker serves (generated from the route table and the wire models, `broker.web.openapi`):
the status must be one the route declares (or a 4XX/5XX error), and a JSON body must validate
against that status's schema. A reply that drifted from its model fails the run.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator


@dataclass(frozen=True)
class Exchange:
    method: str
    path: str
    status: int
    content_type: str
    body: bytes

    def describe(self) -> str:
        return f"{self.method} {self.path} → {self.status} {self.body[:200]!r}"


class Recorder:
    """Collects exchanges from every client thread of the session."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.exchanges: list[Exchange] = []

    def record(
        self, method: str, url: str, status: int, content_type: str, body: bytes
    ) -> None:
        exchange = Exchange(method.upper(), urlsplit(url).path, status, content_type, body)
        with self._lock:
            self.exchanges.append(exchange)


RECORDER = Recorder()


def _template(path: str) -> re.Pattern[str]:
    parts = re.split(r"({\w+})", path)
    return re.compile(
        "^" + "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts) + "$"
    )


def _routes(document: dict[str, Any]) -> list[tuple[re.Pattern[str], str, int]]:
    # literal paths before templated ones of the same shape
    return sorted(
        ((_template(p), p, p.count("{")) for p in document["paths"]), key=lambda r: r[2]
    )


def _declared(document: dict[str, Any], exchange: Exchange) -> dict[str, Any] | str:
    """The response object the route declares for this exchange, or why there is none."""
    for pattern, path, _ in _routes(document):
        if not pattern.match(exchange.path):
            continue
        operation = document["paths"][path].get(exchange.method.lower())
        if operation is None:
            continue
        responses = operation["responses"]
        found = responses.get(str(exchange.status)) or responses.get(f"{exchange.status // 100}XX")
        if found is None:
            return f"status {exchange.status} is not declared for {exchange.method} {path}"
        return dict(found)
    if exchange.status >= 400:  # no such route or method: the error middleware's reply
        return _error_response(document)
    return f"no route declares {exchange.method} {exchange.path}"


_ERROR = {"$ref": "#/components/schemas/Error"}


def _error_response(document: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": _ERROR}}}


@cache
def _validator(schema: str, components: str) -> Draft202012Validator:
    """One validator per distinct schema (building one per reply would take seconds)."""
    return Draft202012Validator({**json.loads(schema), "components": json.loads(components)})


def check(document: dict[str, Any], exchange: Exchange, components: str = "") -> str | None:
    """Why this exchange breaks the contract, or None (`components`: the document's
    components as JSON, when the caller has it already)."""
    declared = _declared(document, exchange)
    if isinstance(declared, str):
        return declared
    content: dict[str, Any] = declared.get("content", {})
    if not content:
        return None
    kind = exchange.content_type.split(";")[0].strip().lower()
    if kind not in content:
        if not exchange.body and exchange.status in (204, 304):
            return None
        return f"content type {kind or 'none'!r}, declared {sorted(content)}"
    if kind != "application/json":
        return None
    try:
        body = json.loads(exchange.body)
    except ValueError:
        return "the body is not JSON"
    components = components or json.dumps(document["components"], sort_keys=True)
    validator = _validator(json.dumps(content[kind]["schema"], sort_keys=True), components)
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "body"
        return f"{where}: {first.message[:200]}"
    return None


def violations(document: dict[str, Any], exchanges: Iterable[Exchange]) -> list[str]:
    """Each distinct breach, with one exchange that shows it."""
    seen: dict[str, str] = {}
    components = json.dumps(document["components"], sort_keys=True)
    for exchange in exchanges:
        why = check(document, exchange, components)
        if why is not None:
            seen.setdefault(f"{exchange.method} {why}", exchange.describe())
    return [f"{why}  (e.g. {example})" for why, example in sorted(seen.items())]
