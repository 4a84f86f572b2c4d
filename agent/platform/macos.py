"""macOS: `ioreg -c IOHIDSystem` reports HIDIdleTime (nanoseconds since the last input);
`ioreg -n Root -d1` reports whether the console session's screen is locked
(`CGSSessionScreenIsLocked` or `IOConsoleLocked`). The parsing is plain text, tested on every
platform; the commands run only on macOS.
"""

from __future__ import annotations

import re
import subprocess
import sys

from agent.platform import IdleState, IdleUnavailable

PLATFORM: str = sys.platform  # a plain str: checked at run time, not by the type checker
IOREG = "/usr/sbin/ioreg"
_IDLE = re.compile(r'"HIDIdleTime"\s*=\s*(\d+)')
_LOCKED = re.compile(r'"(?:CGSSessionScreenIsLocked|IOConsoleLocked)"\s*=\s*(Yes|No)')


def parse_idle_seconds(text: str) -> float:
    """HIDIdleTime from `ioreg -c IOHIDSystem` output, in seconds (the smallest, when
    several HID systems report one)."""
    values = [int(m.group(1)) for m in _IDLE.finditer(text)]
    if not values:
        raise IdleUnavailable("ioreg reported no HIDIdleTime")
    return min(values) / 1e9


def parse_locked(text: str) -> bool:
    """Whether `ioreg -n Root -d1` output says the console screen is locked."""
    return any(m.group(1) == "Yes" for m in _LOCKED.finditer(text))


def _ioreg(*args: str) -> str:
    try:
        done = subprocess.run(
            [IOREG, *args], capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise IdleUnavailable(f"ioreg failed: {exc}") from exc
    return done.stdout


def idle_state() -> IdleState:
    if PLATFORM != "darwin":
        raise IdleUnavailable("the macOS idle backend runs on macOS only")
    return IdleState(
        idle_seconds=parse_idle_seconds(_ioreg("-c", "IOHIDSystem", "-d", "4")),
        locked=parse_locked(_ioreg("-n", "Root", "-d1")),
    )
