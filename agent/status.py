"""The running agent's status, for `bucketreel-agent status`: `<config dir>/status.json`.

The agent rewrites the file (0600, atomically: temp file + `os.replace`) when something changes:
its state, the recording, the spool's size, the last upload, the errors and gaps. It holds
no token, no URL and no recording byte. `status` reads it and checks the instance lock to
tell a running agent from one that is gone (a crashed agent leaves a stale file behind).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.platform.files import write_atomic

STATUS_FILE = "status.json"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class StatusFile:
    """Thread safe; a failure to write is ignored (status must never stop a recording)."""

    def __init__(self, config_dir: Path) -> None:
        self.path = config_dir / STATUS_FILE
        self._lock = threading.Lock()
        self._data: dict[str, Any] = {
            "pid": os.getpid(),
            "state": "starting",
            "started_at": now_iso(),
            "recording_id": None,
            "spool_bytes": 0,
            "spool_segments": 0,
            "uploaded": 0,
            "last_upload": None,
            "errors": 0,
            "last_error": None,
            "gaps": [],
        }

    def update(self, **fields: Any) -> None:
        with self._lock:
            self._data.update(fields)
            self._data["updated_at"] = now_iso()
            self._write(json.dumps(self._data, indent=2, sort_keys=True) + "\n")

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._data)

    def error(self, message: str) -> None:
        with self._lock:
            errors = int(self._data["errors"]) + 1
        self.update(errors=errors, last_error={"at": now_iso(), "message": message[:300]})

    def _write(self, text: str) -> None:
        with contextlib.suppress(OSError):  # status is best effort: the run goes on
            write_atomic(self.path, text.encode())


def read_status(config_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((config_dir / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
