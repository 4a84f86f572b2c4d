"""Structured (JSON lines) logs on stderr. Nothing secret is ever passed to a logger:
no password, code, token, cookie, credential or presigned URL."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update(extra)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("botocore", "boto3", "urllib3", "aiosqlite", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# Paths whose rest is a credential (an invitation link's token): logged without it.
SECRET_PATHS = ("/invite/",)


def loggable_path(path: str) -> str:
    for prefix in SECRET_PATHS:
        if path.startswith(prefix):
            return prefix + "…"
    return path


class AccessLogger(AbstractAccessLogger):
    """Method, path (never the query string, nor a token in it), status, size and time; no
    client address."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        path = loggable_path(request.path)
        self.logger.info(
            "%s %s %s",
            request.method,
            path,
            response.status,
            extra={
                "fields": {
                    "method": request.method,
                    "path": path,
                    "status": response.status,
                    "bytes_in": request.content_length or 0,
                    "bytes_out": response.body_length,
                    "ms": round(time * 1000, 1),
                }
            },
        )
