"""Linux (X11): `XScreenSaverQueryInfo` from libXss, through ctypes.

It reports the milliseconds since the last input and the screen saver's state: when the
screen saver is on, the screen is blanked or locked (screen lockers run as, or turn on, the
screen saver). One display connection is opened on first use and kept; Xlib connections are
not thread safe, so calls are serialised.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from typing import Any

from agent.platform import IdleState, IdleUnavailable

SCREEN_SAVER_OFF, SCREEN_SAVER_ON, SCREEN_SAVER_DISABLED = 0, 1, 2


class XScreenSaverInfo(ctypes.Structure):
    _fields_ = (
        ("window", ctypes.c_ulong),
        ("state", ctypes.c_int),
        ("kind", ctypes.c_int),
        ("til_or_since", ctypes.c_ulong),
        ("idle", ctypes.c_ulong),
        ("event_mask", ctypes.c_ulong),
    )


def state_of(idle_ms: int, saver_state: int) -> IdleState:
    """The idle state for XScreenSaverInfo's `idle` (ms) and `state` fields."""
    return IdleState(idle_seconds=max(0, idle_ms) / 1000, locked=saver_state == SCREEN_SAVER_ON)


def _load(names: tuple[str, ...], short: str) -> ctypes.CDLL:
    for name in (*names, ctypes.util.find_library(short)):
        if not name:
            continue
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    raise IdleUnavailable(f"lib{short} is not installed: cannot measure idle time")


class X11Idle:
    """A connection to one X display, answering XScreenSaverQueryInfo."""

    def __init__(self, display: str) -> None:
        self.display = display
        x11 = _load(("libX11.so.6",), "X11")
        xss = _load(("libXss.so.1",), "Xss")
        x11.XOpenDisplay.restype = ctypes.c_void_p
        x11.XOpenDisplay.argtypes = (ctypes.c_char_p,)
        x11.XDefaultRootWindow.restype = ctypes.c_ulong
        x11.XDefaultRootWindow.argtypes = (ctypes.c_void_p,)
        x11.XCloseDisplay.argtypes = (ctypes.c_void_p,)
        xss.XScreenSaverQueryExtension.argtypes = (
            ctypes.c_void_p, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)
        )
        xss.XScreenSaverAllocInfo.restype = ctypes.POINTER(XScreenSaverInfo)
        xss.XScreenSaverQueryInfo.argtypes = (
            ctypes.c_void_p, ctypes.c_ulong, ctypes.POINTER(XScreenSaverInfo)
        )
        xss.XScreenSaverQueryInfo.restype = ctypes.c_int
        self._x11, self._xss = x11, xss
        handle = x11.XOpenDisplay(display.encode())
        if not handle:
            raise IdleUnavailable(f"cannot open the X display {display!r}")
        self._handle: Any = handle
        event, error = ctypes.c_int(), ctypes.c_int()
        if not xss.XScreenSaverQueryExtension(handle, ctypes.byref(event), ctypes.byref(error)):
            self.close()
            raise IdleUnavailable(f"the X display {display!r} has no MIT-SCREEN-SAVER extension")
        self._root = x11.XDefaultRootWindow(handle)
        self._info = xss.XScreenSaverAllocInfo()
        if not self._info:
            self.close()
            raise IdleUnavailable("XScreenSaverAllocInfo failed")

    def query(self) -> IdleState:
        if not self._handle:
            raise IdleUnavailable("the X display connection is closed")
        if not self._xss.XScreenSaverQueryInfo(self._handle, self._root, self._info):
            raise IdleUnavailable("XScreenSaverQueryInfo failed")
        info = self._info.contents
        return state_of(int(info.idle), int(info.state))

    def close(self) -> None:
        handle, self._handle = self._handle, None
        if handle:
            self._x11.XCloseDisplay(handle)


_lock = threading.Lock()
_connection: X11Idle | None = None


def idle_state() -> IdleState:
    global _connection
    display = os.environ.get("DISPLAY")
    if not display:
        raise IdleUnavailable(
            "no X display (DISPLAY is not set; Wayland sessions are not supported yet)"
        )
    with _lock:
        if _connection is None or _connection.display != display:
            if _connection is not None:
                _connection.close()
            _connection = X11Idle(display)
        return _connection.query()
