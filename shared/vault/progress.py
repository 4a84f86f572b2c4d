"""Progress on a terminal: one line on stderr, rewritten in place, only when stderr is a TTY
(never in a pipe, a log or `--json` output, which stays on stdout)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

_INTERVAL = 0.2  # seconds between redraws


class Progress:
    def __init__(self, what: str, *, stream: TextIO | None = None, enabled: bool | None = None
                 ) -> None:
        self.what = what
        self._stream = stream or sys.stderr
        self.enabled = self._stream.isatty() if enabled is None else enabled
        self.total: int | None = None
        self.done = 0
        self._drawn = 0.0
        self._width = 0

    def add(self, count: int) -> None:
        self.total = (self.total or 0) + count

    def step(self, label: str = "") -> None:
        self.done += 1
        now = time.monotonic()
        if self.enabled and now - self._drawn >= _INTERVAL:
            self._drawn = now
            of = f"/{self.total}" if self.total else ""
            line = f"{self.what}: {self.done}{of} {label}"[:100]
            self._stream.write("\r" + line.ljust(self._width))
            self._stream.flush()
            self._width = len(line)

    def close(self) -> None:
        if self.enabled and self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._stream.flush()
            self._width = 0
