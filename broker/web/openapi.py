"""The API as an OpenAPI 3.1 document: paths and security from the route table, every body's
schema generated from its model (`msgspec.json.schema_components`), so nothing is written
twice. A new route names its request and reply models in `broker.web.routes`; nothing here
changes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import msgspec

from broker.web.routes import Route
from shared import version
from shared.api import Error
from shared.keys import SEQ_MAX
from shared.model import Model
from shared.wire import MAX_ID, MAX_TOKEN

REF = "#/components/schemas/{name}"
_ID = {"type": "string", "minLength": 1, "maxLength": MAX_ID}
_PARAMS: dict[str, dict[str, Any]] = {
    "recording_id": _ID,
    "user_id": _ID,
    "device_id": _ID,
    "code_id": _ID,
    "seq": {"type": "integer", "minimum": 0, "maximum": SEQ_MAX},
    "name": {"type": "string", "pattern": "^[a-z0-9-]+\\.(css|js)$"},
    "token": {"type": "string", "minLength": 1, "maxLength": MAX_TOKEN},  # an invitation's
    "day": {"type": "string", "format": "date", "description": "YYYY-MM-DD"},
}
# Query parameters of the routes that take them (all optional filters)
_DAY = _PARAMS["day"]
_QUERIES: dict[str, dict[str, dict[str, Any]]] = {
    "/api/v1/admin/audit/export": {
        "actor": {"type": "string"}, "action": {"type": "string"},
        "employee": {"type": "string"}, "day": _DAY,
    },
    "/api/v1/employees/{user_id}/days/{day}": {
        "zone": {"type": "string", "maxLength": 64,
                 "description": "the IANA zone to cut the day in (else the pages' zone)"},
    },
    "/api/v1/admin/storage/policies": {
        "bucket": {"type": "string", "maxLength": 63},
        "prefix": {"type": "string", "maxLength": 200},
        "principal_arn": {"type": "string", "maxLength": 2048,
                          "description": "the IAM user or role the broker signs as"},
    },
}
_SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "device": [{"deviceBearer": []}],
    "user": [{"userBearer": []}, {"sessionCookie": []}],
    "device_or_user": [{"deviceBearer": []}, {"userBearer": []}, {"sessionCookie": []}],
    "refresh_cookie": [{"refreshCookie": []}],
}
SECURITY_SCHEMES = {
    "deviceBearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    "userBearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "bucketreel_session"},
    "refreshCookie": {"type": "apiKey", "in": "cookie", "name": "bucketreel_refresh"},
}
# Routes a device may call: each call spends the device's request budget (429 beyond it).
_DEVICE_CALLERS = frozenset({"device", "device_or_user"})
_STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _ref(model: type[Model]) -> dict[str, Any]:
    return {"$ref": REF.format(name=model.__name__)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _rate_limited(route: Route) -> dict[str, Any]:
    """The 429 a device gets over its request budget (`broker.devices.ratelimit`)."""
    budgets = "its call budget"
    if route.creates:
        budgets += " or its stricter budget for calls that add rows"
    who = "the device" if route.auth == "device" else "a device (not a person)"
    said = _json(
        _ref(Error),
        f"{who} is over {budgets}; nothing was done: retry after the seconds `Retry-After` "
        "says",
    )
    said["headers"] = {
        "Retry-After": {
            "description": "seconds until the call would be served",
            "schema": {"type": "integer", "minimum": 1},
        }
    }
    return said


# A form's "see other": no body, the next page in Location.
_REDIRECT = {
    "description": "see other: the page to go to next",
    "headers": {"Location": {"schema": {"type": "string"}, "required": True}},
}


def _success(route: Route, model: type[Model] | None) -> dict[str, Any]:
    if model is not None:
        return _json(_ref(model), "success")
    text = {"schema": {"type": "string"}}
    if route.path.startswith("/static/"):
        return {"description": "success", "content": {"text/css": text, "text/javascript": text}}
    if route.page:
        return {"description": "success", "content": {"text/html": text}}
    if route.path.endswith("/export"):
        return {"description": "success",
                "content": {"application/x-ndjson": {"schema": {"type": "string"}}}}
    return _json({"type": "object"}, "success")


def _operation(route: Route) -> dict[str, Any]:
    responses: dict[str, Any] = {
        str(status): _REDIRECT if 300 <= status < 400 else _success(route, model)
        for status, model in route.responses.items()
    }
    if route.auth in _DEVICE_CALLERS:
        responses["429"] = _rate_limited(route)
    error = _json(_ref(Error), "error")
    if route.page:  # a page may answer a failure with itself, the message on it (sign-in)
        error["description"] = "error: JSON from the error middleware, or the page again"
        error["content"]["text/html"] = {"schema": {"type": "string"}}
    responses["4XX"] = error
    responses["5XX"] = error
    operation: dict[str, Any] = {"summary": route.summary, "responses": responses}
    parameters = [
        {"name": p, "in": "path", "required": True, "schema": _PARAMS[p]}
        for p in re.findall(r"{(\w+)}", route.path)
    ]
    parameters += [
        {"name": name, "in": "query", "required": False, "schema": schema}
        for name, schema in _QUERIES.get(route.path, {}).items()
    ]
    if route.auth == "refresh_cookie":
        parameters.append({
            "name": "X-CSRF-Token", "in": "header", "required": True,
            "schema": {"type": "string"}, "description": "the session's CSRF token",
        })
    if parameters:
        operation["parameters"] = parameters
    if route.request is not None:
        operation["requestBody"] = {
            "required": True, "content": {"application/json": {"schema": _ref(route.request)}},
        }
    if route.auth in _SECURITY:
        operation["security"] = _SECURITY[route.auth]
    notes = []
    if route.roles:
        notes.append("Roles: " + ", ".join(sorted(route.roles)))
    if route.request is not None:
        notes.append("The body must be `application/json` (415 otherwise).")
    if route.method in _STATE_CHANGING:
        notes.append("Refused (403) from another site: a foreign `Origin` or "
                     "`Sec-Fetch-Site: cross-site`.")
    if notes:
        operation["description"] = " ".join(notes)
    return operation


def models(routes: Sequence[Route]) -> list[type[Model]]:
    """Every model a route takes or returns, and the error reply."""
    found: dict[str, type[Model]] = {Error.__name__: Error}
    for route in routes:
        for model in (route.request, *route.responses.values()):
            if model is not None:
                found.setdefault(model.__name__, model)
    return list(found.values())


def document(routes: Sequence[Route]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    _, schemas = msgspec.json.schema_components(models(routes), ref_template=REF)
    return {
        "openapi": "3.1.0",
        "info": {"title": "bucketreel broker", "version": version()},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": SECURITY_SCHEMES},
    }
