"""Windows: a graceful stop when the agent's console window is closed.

Ctrl+C and Ctrl+Break reach Python as SIGINT and SIGBREAK (`agent.recorder` handles both).
Closing the console window arrives only through `SetConsoleCtrlHandler`: the handler runs on
a thread of its own, and Windows ends the process as soon as it returns, or after about five
seconds whatever it does. So the handler sets the recorder's stop event and then waits, up to
that grace, for the run to be done: the segment in progress is encoded and, when the upload
is quick enough, uploaded. What does not make it is reported at the next start (`agent_died`).

Logoff and shutdown (`CTRL_LOGOFF_EVENT`, `CTRL_SHUTDOWN_EVENT`) are handled the same way
when Windows delivers them, which it does to services and to console programs that load no
window library; the agent captures the screen through user32/gdi32, so for it Windows sends
those to windows instead, and the next start reports the gap.

The decision logic is plain Python, tested on every platform; the Win32 call is made only on
Windows.
"""

from __future__ import annotations

import ctypes
import logging
import sys
import threading
from collections.abc import Callable

from agent.logs import Report

log = logging.getLogger(__name__)

PLATFORM: str = sys.platform  # a plain str: checked at run time, not by the type checker

CTRL_C_EVENT = 0
CTRL_BREAK_EVENT = 1
CTRL_CLOSE_EVENT = 2
CTRL_LOGOFF_EVENT = 5
CTRL_SHUTDOWN_EVENT = 6

# why the agent stops, and how long Windows lets the handler run (a little under its limit)
STOP_EVENTS: dict[int, tuple[str, float]] = {
    CTRL_CLOSE_EVENT: ("console window closed", 4.5),
    CTRL_LOGOFF_EVENT: ("user logging off", 4.5),
    CTRL_SHUTDOWN_EVENT: ("system shutting down", 19.0),
}


CONSOLE_EVENT_NAMES = {
    CTRL_CLOSE_EVENT: "CTRL_CLOSE_EVENT",
    CTRL_LOGOFF_EVENT: "CTRL_LOGOFF_EVENT",
    CTRL_SHUTDOWN_EVENT: "CTRL_SHUTDOWN_EVENT",
}


class ConsoleStop:
    """What the console control handler does; `done` is set once the run has finished."""

    def __init__(self, stop: threading.Event, report: Report) -> None:
        self.stop = stop
        self.done = threading.Event()
        self._report = report

    def handle(self, event: int) -> bool:
        """True: handled (Windows ends the process on return); False: the next handler's
        (Ctrl+C and Ctrl+Break: Python turns them into SIGINT and SIGBREAK)."""
        known = STOP_EVENTS.get(event)
        if known is None:
            return False
        why, grace = known
        self.stop.set()
        self._report(
            f"{why}: stopping; finishing the current segment (Windows allows {grace:g} s)",
            event="stopping", signal=CONSOLE_EVENT_NAMES[event],
        )
        self.done.wait(grace)
        return True


def install(stop: threading.Event, report: Report) -> Callable[[], None]:
    """Handle the console's close event (Windows only); returns the function to call when the
    run has finished (it lets a waiting handler return, and removes the handler)."""
    if PLATFORM != "win32":
        return lambda: None
    console = ConsoleStop(stop, report)
    handler_type = ctypes.WINFUNCTYPE(ctypes.c_int, ctypes.c_uint)  # type: ignore[attr-defined,unused-ignore]
    callback = handler_type(lambda event: int(console.handle(event)))
    kernel32 = ctypes.WinDLL("kernel32")  # type: ignore[attr-defined,unused-ignore]
    if not kernel32.SetConsoleCtrlHandler(callback, True):
        log.warning("cannot watch the console for closing: a closed window stops the agent "
                    "without finishing its segment")
        return lambda: None

    def finished() -> None:
        console.done.set()
        kernel32.SetConsoleCtrlHandler(callback, False)  # `callback` lives until here

    return finished
