"""The agent's stderr when it is not a terminal: one JSON object per line (agent.logs).

Every line must be such an object (`time`, `level`, `event`, `message`): a stray print or a
traceback outside the log would break a log shipper, so it fails the test that reads it.
"""

from __future__ import annotations

import json
from typing import Any

KEYS = ("time", "level", "event", "message")


def entry(line: str) -> dict[str, Any]:
    """One stderr line as the JSON object it must be."""
    try:
        value = json.loads(line)
    except ValueError:
        raise AssertionError(f"agent stderr line is not JSON: {line!r}") from None
    if not isinstance(value, dict) or any(key not in value for key in KEYS):
        raise AssertionError(f"agent log entry lacks one of {KEYS}: {line!r}")
    found: dict[str, Any] = value
    return found


def entries(stderr: str) -> list[dict[str, Any]]:
    return [entry(line) for line in stderr.splitlines() if line.strip()]


def messages(stderr: str) -> list[str]:
    """The human-readable message of each entry, in order."""
    return [str(e["message"]) for e in entries(stderr)]


def events(stderr: str, name: str) -> list[dict[str, Any]]:
    return [e for e in entries(stderr) if e["event"] == name]
