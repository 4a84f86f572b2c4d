"""How long the user has been idle, and whether the screen is locked: one function, one
backend per platform (`linux`: X11's MIT-SCREEN-SAVER extension; `windows`:
`GetLastInputInfo`; `macos`: `ioreg`'s HIDIdleTime). Every module imports on every platform;
only the backend of the running one is ever called.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from agent.errors import AgentError


class IdleUnavailable(AgentError):
    """The idle time cannot be measured here (no X display, Wayland, a missing library)."""


@dataclass(frozen=True, slots=True)
class IdleState:
    idle_seconds: float  # since the last keyboard or pointer input
    locked: bool  # the screen is locked (or blanked by the screen saver)


def idle_state() -> IdleState:
    """The user's idle time and the screen's lock state now. Raises `IdleUnavailable`."""
    if sys.platform == "win32":
        from agent.platform import windows

        return windows.idle_state()
    if sys.platform == "darwin":
        from agent.platform import macos

        return macos.idle_state()
    from agent.platform import linux

    return linux.idle_state()


__all__ = ["IdleState", "IdleUnavailable", "idle_state"]
