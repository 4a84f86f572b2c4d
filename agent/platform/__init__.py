"""The agent's platform layer: everything that differs between Linux, Windows and macOS.

- `files`: private files, secure create (`O_NOFOLLOW`/`O_CLOEXEC` where they exist), atomic
  replace (`os.replace`), the private-file checks;
- `lock`: the exclusive file lock (`filelock`: `flock` / `msvcrt.locking`);
- `dirs`: the agent's directory per OS (`platformdirs`);
- `memory`: malloc tuning (glibc only);
- `xshm`: mss's X11 shared-memory grab into a buffer of the caller's (agent/capture_pool.py);
- `stop`, `winstop`: stop hooks (signals; the closed console window on Windows);
- here, and `linux`, `windows`, `macos`: how long the user has been idle, and whether the
  screen is locked (X11's MIT-SCREEN-SAVER, `GetLastInputInfo`, `ioreg`'s HIDIdleTime).

Every module imports on every platform; only the running one's code is ever called. No agent
module outside this package names a POSIX-only or Windows-only API
(tests/agent/test_agent_portable.py checks it over the AST).
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
    elif sys.platform == "darwin":
        from agent.platform import macos

        return macos.idle_state()
    else:
        from agent.platform import linux

        return linux.idle_state()


__all__ = ["IdleState", "IdleUnavailable", "idle_state"]
