"""Where the agent's CPU goes: the CPU time of each pipeline stage, counted as it runs.

Each stage is timed with the calling thread's own CPU clock (`time.thread_time`, about a
microsecond a call), so waiting (for the next tick, the network, a lock) is not counted and
threads do not count each other's work. The counts are process-wide (`STAGES`, one
`StageClock`), read at the end of a recording (the `recording_finished` event's
`cpu_seconds`) and by the benchmark (scripts/bench.sh). What no stage covers (the
interpreter starting and importing, broker calls, status files, queues, the garbage
collector) is the process's CPU time minus their sum: `other`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

Stage = Literal[
    "capture",  # grabbing the screen (mss)
    "compare",  # is this frame the same as the last one (the skip and the health check)
    "convert",  # BGRA into the encoder's picture and the colour conversion to yuv420p
    "encode",  # libx264 and the MP4 muxing
    "hash",  # SHA-256 and MD5 of segments, the custody record's signature
    "upload",  # the PUT of segment bytes to the bucket
    "idle",  # idle time and screen lock queries
    "heartbeat",  # the heartbeat's status report to the broker
]
STAGE_NAMES: tuple[Stage, ...] = (
    "capture", "compare", "convert", "encode", "hash", "upload", "idle", "heartbeat",
)


class StageClock:
    """CPU seconds spent per stage, from every thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spent: dict[str, float] = dict.fromkeys(STAGE_NAMES, 0.0)

    @contextmanager
    def stage(self, name: Stage) -> Iterator[None]:
        """Count the CPU time the calling thread spends inside the `with` block."""
        started = time.thread_time()
        try:
            yield
        finally:
            spent = time.thread_time() - started
            with self._lock:
                self._spent[name] += spent

    def snapshot(self) -> dict[str, float]:
        """Seconds per stage so far, plus `other` (the rest of the process's CPU time) and
        `total` (`time.process_time()`, every thread)."""
        total = time.process_time()
        with self._lock:
            spent = dict(self._spent)
        return {
            **{name: round(value, 4) for name, value in spent.items()},
            "other": round(max(0.0, total - sum(spent.values())), 4),
            "total": round(total, 4),
        }

    def reset(self) -> None:
        with self._lock:
            self._spent = dict.fromkeys(STAGE_NAMES, 0.0)


STAGES = StageClock()
