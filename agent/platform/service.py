"""What installing the agent as a per-user service (`agent.autostart`) asks of the OS.

Two facts the rest of the agent may not name (tests/agent/test_agent_portable.py): which OS
this is, and the launchd domain of this user's login session on macOS (`gui/<uid>`).
"""

from __future__ import annotations

import os
import sys


def system() -> str:
    """`sys.platform`: "linux", "darwin", "win32", or another POSIX system's name."""
    return sys.platform


def launchd_gui_domain() -> str:
    """`gui/<uid>`: the launchd domain of this user's graphical login session (macOS)."""
    if sys.platform == "win32":
        raise OSError("launchd runs on macOS only")
    else:
        return f"gui/{os.getuid()}"
