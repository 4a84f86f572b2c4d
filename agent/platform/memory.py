"""Keeping the agent's resident memory flat over a working day (Linux, glibc).

With glibc's defaults every thread that allocates gets a malloc arena of its own (up to
eight per core), and memory freed in one stays reserved to it. The agent's capture, encode,
upload and heartbeat threads need no more than two.

glibc also serves a large block from the heap instead of its own mapping once a block of
that size has been freed (its "dynamic mmap threshold", up to 32 MiB). The agent frees an
8 MB capture every frame, so from the second frame on every capture, colour conversion and
encoder buffer lands in the heap, where the holes they leave between smaller blocks are
never given back: steady RSS was about 35 MB higher at 1920x1080 (measured with
scripts/bench.sh). A fixed threshold of 1 MiB keeps every large buffer in a mapping of its
own, returned to the system when freed; the page faults that costs at 1 fps are a fraction
of a per cent of one core (for a 1080p capture 2.6 ms a frame, measured: the capture buffers
are therefore reused, agent/capture_pool.py). Elsewhere, a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
ARENA_MAX = 2
MMAP_THRESHOLD = 1 << 20


def tune_malloc() -> bool:
    """Apply the settings above when running on glibc; returns whether they were applied."""
    if sys.platform.startswith("linux"):
        return _tune_glibc()
    else:
        return False


def _tune_glibc() -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (musl has no mallopt)
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied = bool(mallopt(M_ARENA_MAX, ARENA_MAX)) and bool(
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    )
    log.debug("malloc tuning %s", "applied" if applied else "refused")
    return applied
