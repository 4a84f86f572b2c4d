"""mss's XShmGetImage grab, copied into the caller's buffer (X11 only, mss 10.2's internals).

mss 10.2's shared-memory backend (`mss/linux/xshmgetimage.py`) answers each grab with a
fresh `bytearray` copied out of its mmap. `shm_copier` gives a function that issues the same
request (`xcb_shm_get_image` into mss's segment, with mss's checks) and copies into a buffer
the caller brings, under mss's own lock. It gives None, and the caller uses `sct.grab()`,
whenever the internals are not the ones read here: another mss version, another backend
(XGetImage, Xlib, Windows, macOS), MIT-SHM unavailable, the cursor drawn in. mss keeps its
own fallback: while `shm_proven` is False the caller grabs with mss, which proves MIT-SHM
works or gives up on it (`shm_given_up`) and falls back to XGetImage.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import mss

log = logging.getLogger(__name__)

Region = dict[str, int]  # left, top, width, height
# copies `region` of the screen into the buffer, which has exactly its size
ShmCopy = Callable[[Region, bytearray], None]

# the mss releases whose internals this module reads
KNOWN_MSS = ("10.2.",)


def _impl(sct: mss.MSS) -> Any:
    return getattr(sct, "_impl", None)


if sys.platform == "linux":
    import threading

    from mss.linux import xcbgen
    from mss.linux.base import ALL_PLANES
    from mss.linux.xshmgetimage import MSSImplXShmGetImage, ShmStatus

    _LOCK_TYPE = type(threading.Lock())

    def shm_copier(sct: mss.MSS) -> ShmCopy | None:
        """The pooled copy for this mss instance, or None when its internals are not the
        ones this code was written against."""
        impl = _impl(sct)
        reason = None
        if not mss.__version__.startswith(KNOWN_MSS):
            reason = f"mss {mss.__version__} is not one of {KNOWN_MSS}"
        elif not isinstance(impl, MSSImplXShmGetImage):
            reason = f"the mss backend is {type(impl).__name__}, not XShmGetImage"
        elif not isinstance(getattr(sct, "_lock", None), _LOCK_TYPE):
            reason = "mss has no grab lock"
        elif getattr(impl, "with_cursor", True):
            reason = "mss draws the cursor"
        elif getattr(impl, "shm_status", None) not in (ShmStatus.UNKNOWN, ShmStatus.AVAILABLE):
            reason = "MIT-SHM is unavailable"
        elif not all(hasattr(impl, name) for name in (
            "_grab_xshmgetimage", "_buf", "_shmseg", "_bufsize", "conn", "drawable",
            "drawable_depth", "drawable_visual_id",
        )):
            reason = "the XShmGetImage backend lacks the attributes this code reads"
        if reason is not None:
            log.debug("no pooled capture: %s", reason)
            return None
        lock: threading.Lock = sct._lock

        def copy(region: Region, buf: bytearray) -> None:
            with lock:
                _xshm_into(impl, region, buf)

        return copy

    def shm_proven(sct: mss.MSS) -> bool:
        return bool(getattr(_impl(sct), "shm_status", None) is ShmStatus.AVAILABLE)

    def shm_given_up(sct: mss.MSS) -> bool:
        return bool(getattr(_impl(sct), "shm_status", None) is ShmStatus.UNAVAILABLE)

    def _xshm_into(impl: MSSImplXShmGetImage, monitor: Region, buf: bytearray) -> None:
        """mss's `_grab_xshmgetimage`, with the copy going into `buf` (checks included)."""
        if impl.conn is None:
            raise mss.ScreenShotError("Cannot take screenshot while the connection is closed")
        shm, shmseg = impl._buf, impl._shmseg
        if shm is None or shmseg is None:
            raise mss.ScreenShotError("the MIT-SHM segment is gone")
        size = monitor["width"] * monitor["height"] * 4
        if size > impl._bufsize or size != len(buf):
            raise mss.ScreenShotError(
                "Requested capture size exceeds the allocated buffer. If you have resized "
                "the screen, please recreate your MSS object."
            )
        reply = xcbgen.shm_get_image(
            impl.conn, impl.drawable, monitor["left"], monitor["top"], monitor["width"],
            monitor["height"], ALL_PLANES, xcbgen.ImageFormat.ZPixmap, shmseg, 0,
        )
        if reply.depth != impl.drawable_depth or reply.visual != impl.drawable_visual_id:
            raise mss.ScreenShotError(
                "Server returned an image with a depth or visual different than it initially "
                f"reported: expected {impl.drawable_depth}, got {reply.depth}"
            )
        with memoryview(shm) as src, memoryview(buf) as dst:
            dst[:] = src[:size]

else:

    def shm_copier(sct: mss.MSS) -> ShmCopy | None:
        log.debug("no pooled capture: only mss's X11 shared-memory backend has one")
        return None

    def shm_proven(sct: mss.MSS) -> bool:
        return False

    def shm_given_up(sct: mss.MSS) -> bool:
        return True
