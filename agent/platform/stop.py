"""Stop hooks: SIGINT and SIGTERM everywhere, SIGBREAK (Ctrl+Break) on Windows.

A closed console window on Windows arrives another way: `agent.platform.winstop`.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from agent.logs import Report, report


def install_stop_signals(
    stop: threading.Event, report: Report = report
) -> Callable[[], None]:
    """SIGINT/SIGTERM (and SIGBREAK, Ctrl+Break on Windows) set `stop` (graceful); a second one
    raises KeyboardInterrupt. A closed console window on Windows: agent.platform.winstop.

    Call from the main thread. Returns a function that restores the previous handlers.
    """
    signums = [signal.SIGINT, signal.SIGTERM]
    if hasattr(signal, "SIGBREAK"):
        signums.append(signal.SIGBREAK)
    previous: dict[int, Any] = {s: signal.getsignal(s) for s in signums}

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        report(
            f"{signal.Signals(signum).name}: stopping; the current segment is being "
            "finished and uploaded (interrupt again to abort)",
            event="stopping", signal=signal.Signals(signum).name,
        )

    for s in signums:
        signal.signal(s, handler)

    def restore() -> None:
        for s, h in previous.items():
            signal.signal(s, h)

    return restore
