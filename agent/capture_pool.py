"""Capture buffers reused from frame to frame, and the grab that fills them.

mss 10.2's shared-memory backend (XShmGetImage) copies every frame out of its mmap into a
fresh `bytearray`: at 1080p an 8 MB allocation per grab, whose pages the kernel faults in
and zeroes each time. `Grabber` issues the same XShmGetImage request as mss does and copies
from mss's mmap into a buffer from a `BufferPool` instead, one that no frame refers to any
more. Anything else (another mss version, a backend that is not XShmGetImage, mss having
fallen back to XGetImage, Windows, macOS) takes mss's own `sct.grab()`, unchanged.
"""

from __future__ import annotations

import logging
import sys

import mss

from agent.platform.xshm import Region, ShmCopy, shm_copier, shm_given_up, shm_proven

log = logging.getLogger(__name__)


def _refs(buffers: list[bytearray], index: int) -> int:
    """References to `buffers[index]`, as this very expression counts them."""
    return sys.getrefcount(buffers[index])


def _alone_count() -> int:
    """What `_refs` answers for a buffer nothing but its list refers to (calibrated, so
    the interpreter's own temporary references are counted the same way in both)."""
    probe = [bytearray(1)]
    return _refs(probe, 0)


class BufferPool:
    """Same-size `bytearray`s, handed out again once nothing else refers to them.

    Why reuse is safe: a buffer is taken for a new frame only when `sys.getrefcount`
    says the pool's own list is its only holder (`_alone`, measured at start through the
    same function). Everything that can still read a frame holds a reference to its
    buffer: a `Frame` (in the recorder's queue, the encoder's `Segmenter._last`,
    `CaptureHealth._last`, a local variable in any thread), a `memoryview` of it, an array
    built on it. A reference can only be copied from another reference, and the pool gives
    its buffers out only from `take`, in the one capture thread; so once the count says
    "only the pool", no other thread can come to hold that buffer before it is filled and
    given out again. Other threads dropping references concurrently only lower the count:
    at worst a buffer freed a moment too late is not reused this time. (What libx264 or
    the colour conversion read was copied into the encoder's own frame by then: PyAV keeps
    no pointer into the buffer once `add` returns.)

    Bounded: the pool tracks at most `capacity` buffers, the most recently allocated. When
    all of them are held, `take` allocates a new one and forgets the oldest (its holders
    keep it; their last reference frees it, as with mss's own buffers), so a frame held for
    long (the encoder's last one across an unchanged screen) never stops the reuse. After a
    `take`, at most `spares` free buffers stay in the pool; the rest are dropped, so a burst
    (a full frame queue) does not stay resident. The default is none: at 1 fps the buffer
    the encoder let go of since the last grab is the one the next grab takes, and each
    spare would keep 8 MB (1080p) resident for nothing. Buffers of another size (the region
    changed) are dropped at the next `take` of the new size.
    """

    def __init__(self, *, capacity: int = 4, spares: int = 0) -> None:
        if capacity < 1 or spares < 0:
            raise ValueError("a pool needs a capacity of 1 or more and spares of 0 or more")
        self.capacity = capacity
        self.spares = spares
        self._buffers: list[bytearray] = []
        self._alone = _alone_count()
        self.reused = 0  # takes served by a free buffer
        self.allocated = 0  # takes that allocated (tracked or not)

    def __len__(self) -> int:
        return len(self._buffers)

    def _is_free(self, index: int) -> bool:
        return _refs(self._buffers, index) <= self._alone

    def take(self, size: int) -> bytearray:
        """A buffer of `size` bytes that nothing else refers to; its content is stale."""
        self._buffers = [b for b in self._buffers if len(b) == size]
        free = [i for i in range(len(self._buffers)) if self._is_free(i)]
        if free:
            chosen = self._buffers[free[0]]
            extra = set(free[1 + self.spares:])
            if extra:
                self._buffers = [b for i, b in enumerate(self._buffers) if i not in extra]
            self.reused += 1
            return chosen
        self.allocated += 1
        buf = bytearray(size)
        if len(self._buffers) >= self.capacity:
            del self._buffers[0]  # the longest held: its holders keep it, the pool forgets it
        self._buffers.append(buf)
        return buf

    def clear(self) -> None:
        self._buffers = []


class Grabber:
    """Grabs a region into a pooled buffer on mss's XShmGetImage path, else with mss.

    The path is chosen once, when the grabber is made for an open mss instance (logged at
    debug); `pooled=False` forces mss's own grab. While mss has not yet seen a shared-memory
    grab succeed, the grab is mss's own, so mss keeps deciding whether to fall back to
    XGetImage; once it has fallen back, every grab is mss's.
    """

    def __init__(self, sct: mss.MSS, *, pooled: bool = True,
                 pool: BufferPool | None = None) -> None:
        self._sct = sct
        self.pool = pool if pool is not None else BufferPool()
        self._copy: ShmCopy | None = shm_copier(sct) if pooled else None
        self.path = "xshm-pooled" if self._copy is not None else "mss"
        log.debug("screen capture path: %s (mss %s)", self.path, mss.__version__)

    def grab(self, region: Region) -> tuple[bytes | bytearray, int, int]:
        """The BGRA pixels of `region`, its width and its height."""
        copy = self._copy
        if copy is None or not shm_proven(self._sct):
            shot = self._sct.grab(region)
            if copy is not None and shm_given_up(self._sct):
                log.debug("mss fell back to XGetImage: screen capture path now mss")
                self._copy, self.path = None, "mss"
                self.pool.clear()
            return shot.raw, shot.width, shot.height
        width, height = region["width"], region["height"]
        if width <= 0 or height <= 0:
            raise mss.ScreenShotError(f"Region has zero or negative size: {region!r}")
        buf = self.pool.take(width * height * 4)
        copy(region, buf)
        return buf, width, height
