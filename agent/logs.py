"""Logging set-up, run reports and redaction: no token and no presigned query string reaches
a log line.

Two kinds of records go to stderr: log messages (warnings by default, more with -v) and
*reports*, what the agent tells its user whatever the verbosity (a recording started, each
segment uploaded or not, pauses, drops, stopping). Each report has an `event` name and fields.

Two formats, `--log-format` (or $BUCKETREEL_AGENT_LOG_FORMAT): `text`, one readable line per
report and `bucketreel-agent: LEVEL: message` per log message; `json`, one JSON object per line
for every record (`time`, `level`, `event`, `message`, then the event's fields) for a service
manager or a log shipper. `auto`, the default, is text when stderr is a terminal, else json.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import UTC, datetime
from typing import Any, Literal, Protocol
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


LogFormat = Literal["auto", "text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("auto", "text", "json")
LOG_FORMAT_ENV = "BUCKETREEL_AGENT_LOG_FORMAT"
REPORTS = "bucketreel.report"  # the logger of reports: always at INFO
_reports = logging.getLogger(REPORTS)


class Report(Protocol):
    """Tells the user what happened: `line` for people, `event` and `fields` for machines."""

    def __call__(self, line: str, /, *, event: str, **fields: object) -> None: ...


def report(line: str, /, *, event: str, **fields: object) -> None:
    """Report `line` (shown whatever the verbosity), as event `event` with `fields`."""
    _reports.info(line, extra={"event": event, "fields": fields})


def fatal(message: str, /, *, exit_code: int) -> None:
    """The run's last word: why it ends with `exit_code` (`bucketreel-agent: error: ...`)."""
    _reports.error(message, extra={"event": "exit", "fields": {"exit_code": exit_code}})


def default_log_format(environ: dict[str, str] | None = None) -> LogFormat:
    """$BUCKETREEL_AGENT_LOG_FORMAT when it names a format, else auto."""
    wanted = (os.environ if environ is None else environ).get(LOG_FORMAT_ENV, "").strip().lower()
    for known in LOG_FORMATS:
        if wanted == known:
            return known
    return "auto"


class TextFormatter(logging.Formatter):
    """A report as its bare line (an error report as `bucketreel-agent: error: ...`); any other
    record as `bucketreel-agent: LEVEL: message`."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if hasattr(record, "event"):
            if record.levelno < logging.WARNING:
                return message
            return f"bucketreel-agent: {record.levelname.lower()}: {message}"
        text = f"bucketreel-agent: {record.levelname}: {message}"
        if record.exc_text:
            text += "\n" + record.exc_text
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: `time` (UTC, ISO 8601), `level`, `event`
    ("log" for a log message, with its `logger`), `message`, then the event's fields; `error`
    holds a logged exception's traceback. String fields are redacted like messages."""

    def format(self, record: logging.LogRecord) -> str:
        event = getattr(record, "event", None)
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "event": event or "log",
            "message": record.getMessage(),
        }
        if event is None:
            entry["logger"] = record.name
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                if key not in entry:
                    entry[key] = redact(value) if isinstance(value, str) else value
        if record.exc_text:
            entry["error"] = record.exc_text
        return json.dumps(entry, default=str, ensure_ascii=False)


def setup_logging(
    verbosity: int = 0, log_format: LogFormat = "auto", *, stream: Any = None
) -> LogFormat:
    """Log to stderr: reports always, warnings by default, info with -v, debug with -vv.
    Returns the format chosen (auto resolved to text or json).

    urllib3 stays at WARNING whatever the verbosity: at DEBUG it logs full request URLs,
    presigned query strings included.
    """
    out = sys.stderr if stream is None else stream
    if log_format == "auto":
        isatty = getattr(out, "isatty", None)
        log_format = "text" if isatty is not None and isatty() else "json"
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(out)
    handler.setFormatter(TextFormatter() if log_format == "text" else JsonFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    _reports.setLevel(logging.INFO)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    return log_format
