"""The API as an OpenAPI 3.1 document, rendered from the route table."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from broker.web.routes import Route
from shared import version
from shared.errors import ErrorCode
from shared.keys import SEQ_MAX
from shared.wire import (
    GAP_REASONS,
    MAX_SEGMENT_BYTES,
    MAX_SEGMENT_DURATION_MS,
    POLICY_RANGES,
    Range,
)

_TIME = {"type": "string", "format": "date-time"}
_B64_SHA256 = {"type": "string", "contentEncoding": "base64", "minLength": 44, "maxLength": 44}
_B64_MD5 = {"type": "string", "contentEncoding": "base64", "minLength": 24, "maxLength": 24}


def _obj(required: Sequence[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": props}


def _number(bound: Range, *, nullable: bool = False) -> dict[str, Any]:
    kind = "integer" if bound.kind is int else "number"
    low = "exclusiveMinimum" if bound.lo_open else "minimum"
    return {"type": [kind, "null"] if nullable else kind, low: bound.lo, "maximum": bound.hi}


_POLICY = {key: _number(bound) for key, bound in POLICY_RANGES.items()}
_POLICY_OR_NULL = {key: _number(bound, nullable=True) for key, bound in POLICY_RANGES.items()}


SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": _obj(
        ["error", "message"],
        error={"type": "string", "enum": [c.value for c in ErrorCode]},
        message={"type": "string"},
    ),
    "Health": _obj(["status"], status={"type": "string"}),
    "EnrollRequest": _obj(
        ["code", "name"],
        code={"type": "string", "maxLength": 200},
        name={"type": "string", "maxLength": 200},
        public_key={
            "type": "string",
            "contentEncoding": "base64",
            "description": "the device's Ed25519 public key (chain of custody)",
        },
    ),
    "RefreshRequest": _obj(["refresh_token"], refresh_token={"type": "string"}),
    "TokenPair": _obj(
        ["device_id", "access_token", "refresh_token", "expires_in"],
        device_id={"type": "string"},
        access_token={"type": "string"},
        refresh_token={"type": "string"},
        expires_in={"type": "integer"},
    ),
    "StartRecording": _obj(["started_at"], started_at=_TIME),
    "RecordingCreated": _obj(["recording_id"], recording_id={"type": "string"}),
    "UploadRequest": _obj(
        ["size", "sha256", "md5", "started_at", "duration_ms"],
        size={"type": "integer", "minimum": 1, "maximum": MAX_SEGMENT_BYTES},
        sha256=_B64_SHA256,
        md5=_B64_MD5,
        started_at=_TIME,
        duration_ms={"type": "integer", "minimum": 1, "maximum": MAX_SEGMENT_DURATION_MS},
        custody=_obj(
            ["prev", "signature"],
            prev={"type": "string", "pattern": "^[0-9a-f]{64}$"},
            signature={"type": "string", "contentEncoding": "base64"},
        ),
    ),
    "GapReport": _obj(
        ["seqs", "reason"],
        seqs={"type": "array", "items": {"type": "integer", "minimum": 0}},
        reason={"type": "string", "enum": list(GAP_REASONS)},
        **{
            "from": {**_TIME, "description": "a pause's start (idle, locked only)"},
            "to": {**_TIME, "description": "a pause's end (idle, locked only)"},
        },
        signature={
            "type": ["string", "null"], "contentEncoding": "base64",
            "description": "the device's Ed25519 signature of the report (custody gap record)",
        },
    ),
    "Heartbeat": _obj(
        ["state", "spool_bytes", "spool_segments", "errors"],
        state={"type": "string"},
        recording_id={"type": ["string", "null"]},
        spool_bytes={"type": "integer", "minimum": 0},
        spool_segments={"type": "integer", "minimum": 0},
        last_upload={"type": ["object", "null"]},
        errors={"type": "integer", "minimum": 0},
        last_error={"type": ["object", "null"]},
        interval={"type": "integer", "minimum": 1},
    ),
    "HeartbeatReceived": _obj(
        ["received_at", "interval", "policy"],
        received_at=_TIME,
        interval={"type": "integer"},
        policy={**_obj([], **_POLICY), "description": "the tenant's policy: the keys set"},
    ),
    "Policy": _obj(
        [*POLICY_RANGES, "updated_at"],
        **_POLICY_OR_NULL,
        updated_at={"type": ["string", "null"], "format": "date-time"},
    ),
    "PolicyUpdate": {
        **_obj([], **_POLICY_OR_NULL),
        "minProperties": 1,
        "additionalProperties": False,
        "description": "keys named are set (null clears one); keys not named stay as they are",
    },
    "UploadGrant": _obj(
        ["url", "method", "headers", "expires_at"],
        url={"type": "string", "format": "uri"},
        method={"type": "string", "enum": ["PUT"]},
        headers={"type": "object", "additionalProperties": {"type": "string"}},
        expires_at=_TIME,
    ),
    "SegmentState": _obj(["state"], state={"type": "string", "enum": ["verified"]}),
    "SegmentInfo": _obj(
        ["seq", "key", "state", "size", "sha256", "started_at", "duration_ms", "grants"],
        seq={"type": "integer"},
        key={"type": "string"},
        state={"type": "string", "enum": ["pending", "verified"]},
        size={"type": "integer"},
        sha256=_B64_SHA256,
        started_at=_TIME,
        duration_ms={"type": "integer"},
        grants={"type": "integer"},
        record_hash={"type": ["string", "null"]},
    ),
    "RecordingInfo": _obj(
        ["recording_id", "user_id", "device_id", "state", "started_at", "finished_at", "segments"],
        recording_id={"type": "string"},
        user_id={"type": "string"},
        device_id={"type": ["string", "null"]},
        state={"type": "string", "enum": ["recording", "finished"]},
        started_at=_TIME,
        finished_at={"type": ["string", "null"], "format": "date-time"},
        segments={"type": "array", "items": {"$ref": "#/components/schemas/SegmentInfo"}},
        gaps={
            "type": "array",
            "items": _obj(
                ["seqs", "reason", "reported_at"],
                seqs={"type": "array", "items": {"type": "integer"}},
                reason={"type": "string"},
                reported_at=_TIME,
                **{"from": _TIME, "to": _TIME},
            ),
        },
    ),
    "LoginRequest": _obj(
        ["tenant", "email", "password"],
        tenant={"type": "string", "description": "tenant name or id"},
        email={"type": "string", "maxLength": 320},
        password={"type": "string", "maxLength": 1024},
    ),
    "LoginStep": _obj(
        ["mfa", "challenge", "expires_in"],
        mfa={"type": "string", "enum": ["totp", "enroll"]},
        challenge={"type": "string"},
        expires_in={"type": "integer"},
        provisioning_uri={"type": "string", "description": "otpauth:// URI (enroll only)"},
    ),
    "MfaRequest": _obj(
        ["challenge", "code"],
        challenge={"type": "string"},
        code={"type": "string", "description": "6-digit TOTP code or a recovery code"},
        cookie={"type": "boolean", "description": "browser: set the session cookie instead"},
    ),
    "Session": _obj(
        ["expires_in"],
        access_token={"type": "string"},
        refresh_token={"type": "string"},
        token_type={"type": "string", "enum": ["Bearer"]},
        expires_in={"type": "integer"},
        csrf_token={"type": "string", "description": "cookie sessions only"},
        recovery_codes={"type": "array", "items": {"type": "string"}},
        failed_sign_ins={
            "type": "object",
            "description": "failed passwords and codes since the last full sign-in, if any",
            "properties": {"count": {"type": "integer"}, "last_at": _TIME},
        },
    ),
    "SessionRefreshed": _obj(
        ["expires_in", "expires_at", "csrf_token"],
        expires_in={"type": "integer", "description": "seconds the new access cookie lives"},
        expires_at=_TIME,
        csrf_token={"type": "string"},
    ),
    "SignedOut": _obj(["status"], status={"type": "string"}),
    "RegisterDevice": _obj(
        ["name"],
        name={"type": "string", "maxLength": 200},
        public_key={"type": "string", "contentEncoding": "base64"},
    ),
    "Employees": _obj(
        ["employees"],
        employees={
            "type": "array",
            "items": _obj(
                ["user_id", "email", "role"],
                user_id={"type": "string"},
                email={"type": "string"},
                role={"type": "string"},
            ),
        },
    ),
    "Recordings": _obj(
        ["recordings"],
        recordings={
            "type": "array",
            "items": _obj(
                ["recording_id", "device_id", "state", "started_at", "finished_at"],
                recording_id={"type": "string"},
                device_id={"type": ["string", "null"]},
                state={"type": "string"},
                started_at=_TIME,
                finished_at={"type": ["string", "null"], "format": "date-time"},
            ),
        },
    ),
    "ViewUrl": _obj(
        ["url", "expires_at"], url={"type": "string", "format": "uri"}, expires_at=_TIME
    ),
    "Receipts": _obj(
        ["receipts"],
        receipts={
            "type": "array",
            "items": _obj(
                ["at", "viewer", "viewer_role", "recording_id", "seq"],
                at=_TIME,
                viewer={"type": "string"},
                viewer_role={"type": "string"},
                recording_id={"type": "string"},
                seq={"type": "integer"},
            ),
        },
    ),
    "Assignment": _obj(
        ["manager_id", "employee_id"],
        manager_id={"type": "string"},
        employee_id={"type": "string"},
    ),
    "Devices": _obj(
        ["devices"],
        devices={
            "type": "array",
            "items": _obj(
                ["device_id", "user_id", "name", "created_at", "revoked_at"],
                device_id={"type": "string"},
                user_id={"type": "string"},
                name={"type": "string"},
                created_at=_TIME,
                revoked_at={"type": ["string", "null"], "format": "date-time"},
                last_seen_at={"type": ["string", "null"], "format": "date-time"},
                last_status={"type": ["object", "null"]},
                silent={"type": "boolean"},
                custody_key={"type": "boolean"},
            ),
        },
    ),
    "DeviceRevoked": _obj(
        ["device_id", "state"], device_id={"type": "string"}, state={"type": "string"}
    ),
}

_STORAGE_CHECK = _obj(
    ["checked_at", "can_write", "findings", "probes"],
    checked_at=_TIME,
    can_write={"type": "boolean"},
    findings={"type": "array", "items": _obj(
        ["name", "severity", "message", "outcome"], name={"type": "string"},
        severity={"type": "string"}, message={"type": "string"}, outcome={"type": "string"},
    )},
    probes={"type": "array", "items": {"type": "object"}},
)
SCHEMAS["StorageRequest"] = _obj(
    ["bucket", "region"],
    bucket={"type": "string", "maxLength": 63},
    region={"type": "string", "maxLength": 40},
    endpoint_url={"type": ["string", "null"], "maxLength": 500},
    prefix={"type": "string", "maxLength": 200},
    access_key_id={"type": ["string", "null"], "description": "static keys (or role_arn)"},
    secret_access_key={"type": ["string", "null"], "writeOnly": True},
    role_arn={"type": ["string", "null"], "description": "role option (or static keys)"},
    accept_risk={"type": "boolean", "description": "save despite self-check findings"},
)
SCHEMAS["StorageSaved"] = _obj(
    ["tenant_id", "bucket", "auth_mode", "credential_version", "check"],
    tenant_id={"type": "string"},
    bucket={"type": "string"},
    auth_mode={"type": "string", "enum": ["keys", "role"]},
    credential_version={"type": "integer"},
    check=_STORAGE_CHECK,
)
SCHEMAS["StorageStatus"] = _obj(
    ["configured", "external_id", "state", "last_check"],
    configured={"type": "boolean"},
    external_id={"type": "string"},
    state={"type": "string", "enum": ["ok", "access_revoked"]},
    state_reason={"type": ["string", "null"]},
    state_changed_at={"type": ["string", "null"], "format": "date-time"},
    last_check={"oneOf": [_STORAGE_CHECK, {"type": "null"}]},
    bucket={"type": "string"},
    region={"type": "string"},
    endpoint_url={"type": ["string", "null"]},
    prefix={"type": "string"},
    auth_mode={"type": "string", "enum": ["keys", "role"]},
    access_key_id={"type": ["string", "null"]},
    role_arn={"type": ["string", "null"]},
    credential_version={"type": "integer"},
)

_PARAMS = {
    "recording_id": {"type": "string"},
    "user_id": {"type": "string"},
    "device_id": {"type": "string"},
    "seq": {"type": "integer", "minimum": 0, "maximum": SEQ_MAX},
    "name": {"type": "string"},
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


# Routes a device may call: each call spends the device's request budget (429 beyond it).
_DEVICE_CALLERS = frozenset({"device", "device_or_user"})


def _rate_limited(route: Route) -> dict[str, Any]:
    """The 429 a device gets over its request budget (`broker.devices.ratelimit`)."""
    budgets = "its call budget"
    if route.creates:
        budgets += " or its stricter budget for calls that add rows"
    who = "the device" if route.auth == "device" else "a device (not a person)"
    return {
        "description": f"{who} is over {budgets}; nothing was done: retry after the "
        "seconds `Retry-After` says",
        "headers": {
            "Retry-After": {
                "description": "seconds until the call would be served",
                "schema": {"type": "integer", "minimum": 1},
            }
        },
        "content": {"application/json": {"schema": _ref("Error")}},
    }


def _operation(route: Route) -> dict[str, Any]:
    error = {"description": "error", "content": {"application/json": {"schema": _ref("Error")}}}
    responses: dict[str, Any] = {}
    for status, schema in route.responses.items():
        content = {"application/json": {"schema": _ref(schema) if schema else {"type": "object"}}}
        if route.page and not schema:
            content = {"text/html": {"schema": {"type": "string"}}}
        responses[str(status)] = {"description": "success", "content": content}
    if route.auth in _DEVICE_CALLERS:
        responses["429"] = _rate_limited(route)
    responses["4XX"] = error
    responses["5XX"] = error
    operation: dict[str, Any] = {"summary": route.summary, "responses": responses}
    params = re.findall(r"{(\w+)}", route.path)
    if params:
        operation["parameters"] = [
            {"name": p, "in": "path", "required": True, "schema": _PARAMS[p]} for p in params
        ]
    if route.auth == "refresh_cookie":
        operation.setdefault("parameters", []).append({
            "name": "X-CSRF-Token", "in": "header", "required": True,
            "schema": {"type": "string"}, "description": "the session's CSRF token",
        })
    if route.request_schema:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(route.request_schema)}},
        }
    security: dict[str, list[dict[str, list[str]]]] = {
        "device": [{"deviceBearer": []}],
        "user": [{"userBearer": []}, {"sessionCookie": []}],
        "device_or_user": [{"deviceBearer": []}, {"userBearer": []}, {"sessionCookie": []}],
        "refresh_cookie": [{"refreshCookie": []}],
    }
    if route.auth in security:
        operation["security"] = security[route.auth]
    if route.roles:
        operation["description"] = "Roles: " + ", ".join(sorted(route.roles))
    return operation


def document(routes: Sequence[Route]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "bucketreel broker", "version": version()},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "deviceBearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "userBearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "bucketreel_session"},
                "refreshCookie": {"type": "apiKey", "in": "cookie", "name": "bucketreel_refresh"},
            },
        },
    }
