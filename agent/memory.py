"""Keeping the agent's resident memory flat over a working day (Linux, glibc).

With glibc's defaults every thread that allocates gets a malloc arena of its own (up to
eight per core), and memory freed in one stays reserved to it. The agent's capture, encode,
upload and heartbeat threads need no more than two. (A fixed, low mmap threshold would
return each 8 MB capture to the system at once, but measured at 1 fps on 1080p it costs more
CPU in page faults than it saves memory: not applied.) Elsewhere, a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

M_ARENA_MAX = -8
ARENA_MAX = 2


def tune_malloc() -> bool:
    """Apply the settings above when running on glibc; returns whether they were applied."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (musl has no mallopt)
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied = bool(mallopt(M_ARENA_MAX, ARENA_MAX))
    log.debug("malloc tuning %s", "applied" if applied else "refused")
    return applied
