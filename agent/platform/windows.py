"""Windows: `GetLastInputInfo` (the tick of the last input) against `GetTickCount`.

Both are 32-bit millisecond tick counts that wrap every 49.7 days, so the difference is taken
modulo 2**32. The screen counts as locked while the input desktop cannot be opened (the lock
screen's secure desktop has it). The Win32 calls are made only on Windows; the arithmetic is
plain Python, tested on every platform.
"""

from __future__ import annotations

import ctypes
import sys

from agent.platform import IdleState, IdleUnavailable

PLATFORM: str = sys.platform  # a plain str: checked at run time, not by the type checker
TICK_WRAP = 2**32
DESKTOP_SWITCHDESKTOP = 0x0100


def idle_ms(now_tick: int, last_input_tick: int) -> int:
    """Milliseconds from the last input to now, across a wrap of the 32-bit tick count."""
    return (now_tick - last_input_tick) % TICK_WRAP


def state_of(now_tick: int, last_input_tick: int, input_desktop: int | None) -> IdleState:
    """`input_desktop`: the handle OpenInputDesktop returned (0 or None: locked)."""
    return IdleState(
        idle_seconds=idle_ms(now_tick, last_input_tick) / 1000, locked=not input_desktop
    )


class LASTINPUTINFO(ctypes.Structure):
    _fields_ = (("cbSize", ctypes.c_uint), ("dwTime", ctypes.c_uint))


def idle_state() -> IdleState:
    if PLATFORM != "win32":
        raise IdleUnavailable("the Windows idle backend runs on Windows only")
    user32 = ctypes.WinDLL("user32")  # type: ignore[attr-defined,unused-ignore]
    kernel32 = ctypes.WinDLL("kernel32")  # type: ignore[attr-defined,unused-ignore]
    info = LASTINPUTINFO()
    info.cbSize = ctypes.sizeof(LASTINPUTINFO)
    if not user32.GetLastInputInfo(ctypes.byref(info)):
        raise IdleUnavailable("GetLastInputInfo failed")
    kernel32.GetTickCount.restype = ctypes.c_uint
    now = int(kernel32.GetTickCount())
    user32.OpenInputDesktop.restype = ctypes.c_void_p
    desktop = user32.OpenInputDesktop(0, False, DESKTOP_SWITCHDESKTOP)
    if desktop:
        user32.CloseDesktop(ctypes.c_void_p(desktop))
    return state_of(now, int(info.dwTime), desktop)
