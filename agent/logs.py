"""Logging set-up and redaction: no token and no presigned query string reaches a log line."""

from __future__ import annotations

import logging
import re
import sys
from urllib.parse import urlsplit

_REDACTIONS = (
    # a URL's query string (presigned URLs carry their signature and credential there)
    (re.compile(r"(https?://[^\s?#'\"]*)\?[^\s#'\"]*"), r"\1?<redacted>"),
    (re.compile(r"(?i)(X-Amz-[A-Za-z-]+=)[^\s&'\"]+"), r"\1<redacted>"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1<redacted>"),
    (
        re.compile(r"(?i)([\"']?(?:access|refresh)_token[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"),
        r"\1<redacted>",
    ),
)


def redact(text: str) -> str:
    """`text` with URL query strings, bearer tokens and token fields blanked out."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


def url_path(url: str) -> str:
    """The path of `url`, without scheme, host, query or fragment (safe to show and log)."""
    return urlsplit(url).path or "/"


def url_origin_path(url: str) -> str:
    """`scheme://host/path` of `url`: everything but the query string and fragment."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


class RedactingFilter(logging.Filter):
    """Rewrites each record's message through `redact` (a last line of defence)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def setup_logging(verbosity: int = 0) -> None:
    """Log to stderr: warnings by default, info with -v, debug with -vv.

    urllib3 stays at WARNING whatever the verbosity: at DEBUG it logs full request URLs,
    presigned query strings included.
    """
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("bucketreel-agent: %(levelname)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
