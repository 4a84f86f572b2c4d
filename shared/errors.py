"""Error codes carried in `{"error": code, "message": text}` replies."""

from enum import StrEnum


class ErrorCode(StrEnum):
    BAD_REQUEST = "bad_request"
    MALFORMED_JSON = "malformed_json"
    INVALID_FIELD = "invalid_field"
    BODY_TOO_LARGE = "body_too_large"
    UNAUTHENTICATED = "unauthenticated"
    INVALID_TOKEN = "invalid_token"
    INVALID_ENROLLMENT_CODE = "invalid_enrollment_code"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    CONFLICT = "conflict"
    SEGMENT_NOT_UPLOADED = "segment_not_uploaded"
    SEGMENT_MISMATCH = "segment_mismatch"
    RECORDING_FINISHED = "recording_finished"
    STORAGE_NOT_CONFIGURED = "storage_not_configured"
    STORAGE_UNAVAILABLE = "storage_unavailable"
    RATE_LIMITED = "rate_limited"
    INVALID_CREDENTIALS = "invalid_credentials"
    INVALID_MFA_CODE = "invalid_mfa_code"
    WEAK_PASSWORD = "weak_password"
    CSRF_FAILED = "csrf_failed"
    SERVICE_UNAVAILABLE = "service_unavailable"
    INTERNAL = "internal_error"
