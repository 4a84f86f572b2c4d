"""Whether this session lets the agent see the screen at all, asked of the OS at start and
whenever a capture delivers no picture (agent.health names the reason from this).

- Linux: a Wayland session (`XDG_SESSION_TYPE=wayland`, or `WAYLAND_DISPLAY` set). X11 capture
  there reaches only XWayland, whose windows it sees black, never the desktop.
- macOS: `CGPreflightScreenCaptureAccess()` from CoreGraphics (macOS 10.15 and later, through
  ctypes): False when the agent has no Screen Recording permission, in which case capture
  delivers the wallpaper only.
- Windows: nothing to ask (capture is not refused to a desktop process).

Every function imports and runs on every OS; only the running one's checks ever return
something.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from collections.abc import Mapping

log = logging.getLogger(__name__)

PLATFORM: str = sys.platform  # a plain str: checked at run time, not by the type checker
CORE_GRAPHICS = "/System/Library/Frameworks/CoreGraphics.framework/CoreGraphics"

NO_PERMISSION = "no_permission"
WAYLAND_SESSION = "wayland_session"

WAYLAND_ADVICE = (
    "this is a Wayland session: the agent sees only XWayland windows, which it captures "
    "black, never the desktop. Log in with an 'Xorg' (X11) session instead (on the login "
    "screen's session menu, e.g. 'GNOME on Xorg'), or ask your admin"
)
PERMISSION_ADVICE = (
    "bucketreel-agent has no permission to record the screen: grant Screen Recording to "
    "bucketreel-agent in System Settings → Privacy & Security → Screen Recording, then "
    "restart it"
)


def wayland_session(env: Mapping[str, str] | None = None) -> bool:
    """Whether the desktop session is Wayland (its environment says so)."""
    env = os.environ if env is None else env
    return env.get("XDG_SESSION_TYPE", "").strip().lower() == "wayland" or bool(
        env.get("WAYLAND_DISPLAY")
    )


def capture_allowed() -> bool | None:
    """macOS: whether the process may record the screen (`CGPreflightScreenCaptureAccess`,
    which asks nothing of the user). None where there is no such check (another OS, a macOS
    before 10.15, CoreGraphics not loadable)."""
    if PLATFORM != "darwin":
        return None
    try:
        graphics = ctypes.CDLL(ctypes.util.find_library("CoreGraphics") or CORE_GRAPHICS)
        preflight = graphics.CGPreflightScreenCaptureAccess
    except (OSError, AttributeError) as exc:
        log.debug("cannot ask for the screen recording permission: %s", exc)
        return None
    preflight.argtypes = ()
    preflight.restype = ctypes.c_bool
    return bool(preflight())


def known_cause(env: Mapping[str, str] | None = None) -> str | None:
    """What the OS says keeps the agent from seeing the screen: `no_permission` (macOS),
    `wayland_session` (Linux), or None when it says nothing."""
    if PLATFORM == "darwin":
        return NO_PERMISSION if capture_allowed() is False else None
    if PLATFORM.startswith("linux") or PLATFORM.startswith("freebsd"):
        return WAYLAND_SESSION if wayland_session(env) else None
    return None


def advice(cause: str | None) -> str | None:
    """What to tell the person about `cause` (a `known_cause` answer)."""
    return {NO_PERMISSION: PERMISSION_ADVICE, WAYLAND_SESSION: WAYLAND_ADVICE}.get(cause or "")
