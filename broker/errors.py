"""The broker's one exception root and its domain errors.

Each error carries the HTTP status and the wire code it maps to; the error middleware
(`broker.web.middleware`) and the CLI's top-level handler are the only places that turn
them into replies or exit codes.
"""

from __future__ import annotations

import asyncio

from shared.errors import ErrorCode


class BrokerError(Exception):
    status = 500
    code = ErrorCode.INTERNAL

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ConfigError(BrokerError):
    """Settings are missing or unsafe; the broker refuses to start."""


class InvalidInput(BrokerError):
    status = 400
    code = ErrorCode.INVALID_FIELD


class Unauthenticated(BrokerError):
    status = 401
    code = ErrorCode.UNAUTHENTICATED


class Forbidden(BrokerError):
    status = 403
    code = ErrorCode.FORBIDDEN


class NotFound(BrokerError):
    status = 404
    code = ErrorCode.NOT_FOUND


class Conflict(BrokerError):
    status = 409
    code = ErrorCode.CONFLICT


class StorageUnavailable(BrokerError):
    """The customer's bucket did not answer, or refused the broker's credentials."""

    status = 503
    code = ErrorCode.STORAGE_UNAVAILABLE


class RateLimited(BrokerError):
    """Too many attempts or calls (failed logins, a device over its budget); the reply carries
    `Retry-After` (seconds)."""

    status = 429
    code = ErrorCode.RATE_LIMITED

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))


class ServiceUnavailable(BrokerError):
    """A dependency the request needs (the database) did not answer, or stayed busy with
    concurrent changes; nothing was decided. With `retry_after`, the reply says when to
    try again (`Retry-After`, seconds)."""

    status = 503
    code = ErrorCode.SERVICE_UNAVAILABLE

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = None if retry_after is None else max(1, int(retry_after))


def stop_if_cancelled() -> None:
    """For a background loop that has just caught an error: stop if the task is being
    cancelled. A cancel can surface as another error (SQLAlchemy turns one that lands during a
    commit or rollback into `PendingRollbackError`); a loop that logged it and slept on would
    never stop, and the broker's shutdown would wait for it forever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
