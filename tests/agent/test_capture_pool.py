"""The capture buffer pool: pooled XShm grabs are mss's pixels, and a held frame stays put.

The pool alone needs no display. The grabs run on a real Xvfb of this module's own (a still
one, 640x360, that the tests paint themselves, so every picture is known and differs from the
last) and, for `ScreenCapture`, on the suite's animated display.
"""

from __future__ import annotations

import ctypes
import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import mss
import pytest

from agent.capture import Frame, ScreenCapture
from agent.capture_pool import BufferPool, Grabber
from agent.encode import Segmenter
from tests.support.animate import load_xlib
from tests.support.display import XDisplay, run_xvfb

WIDTH, HEIGHT = 640, 360
FULL = {"left": 0, "top": 0, "width": WIDTH, "height": HEIGHT}
PART = {"left": 37, "top": 11, "width": 301, "height": 123}  # odd sizes, off the origin


@dataclass
class Painter:
    """Paints the root window of a display: stripes whose colours and widths follow `n`."""

    xlib: ctypes.CDLL
    dpy: int
    root: int
    gc: int

    def paint(self, n: int) -> None:
        x = 0
        i = 0
        while x < WIDTH:
            step = 3 + (n * 7 + i * 5) % 29
            colour = (n * 0x3F1D27 + i * 0x0B1705) & 0xFFFFFF
            self.xlib.XSetForeground(self.dpy, self.gc, colour)
            self.xlib.XFillRectangle(self.dpy, self.root, self.gc, x, 0, step, HEIGHT)
            x, i = x + step, i + 1
        self.xlib.XSetForeground(self.dpy, self.gc, 0xFFFFFF ^ (n * 0x010101))
        self.xlib.XFillRectangle(self.dpy, self.root, self.gc, n % WIDTH, (n * 3) % HEIGHT, 9, 9)
        self.xlib.XSync(self.dpy, 0)


@pytest.fixture(scope="module")
def still() -> Iterator[XDisplay]:
    with run_xvfb(WIDTH, HEIGHT, animate=False) as display:
        yield display


@pytest.fixture
def painter(still: XDisplay) -> Iterator[Painter]:
    xlib = load_xlib()
    dpy = xlib.XOpenDisplay(still.display.encode())
    assert dpy, f"cannot open {still.display}"
    screen = xlib.XDefaultScreen(dpy)
    yield Painter(xlib, dpy, xlib.XRootWindow(dpy, screen), xlib.XDefaultGC(dpy, screen))
    xlib.XCloseDisplay(ctypes.c_void_p(dpy))


@pytest.fixture
def sct(still: XDisplay) -> Iterator[mss.MSS]:
    with mss.MSS(display=still.display) as screen:
        yield screen


def expected(sct: mss.MSS, region: dict[str, int]) -> bytes:
    return bytes(sct.grab(region).raw)


# -- the pool alone ---------------------------------------------------------------------


def test_a_released_buffer_is_reused_and_a_held_one_never() -> None:
    pool = BufferPool(capacity=4, spares=1)
    first = pool.take(16)
    second = pool.take(16)
    assert second is not first  # `first` is still held here
    first_id = id(first)
    del first
    third = pool.take(16)
    assert id(third) == first_id  # nothing referred to it any more
    assert third is not second
    assert (pool.reused, pool.allocated) == (1, 2)


def test_a_buffer_seen_through_a_memoryview_is_held() -> None:
    pool = BufferPool()
    buf = pool.take(16)
    view = memoryview(buf)[4:8]
    del buf
    assert view.obj is not pool.take(16)
    view.release()


def test_the_pool_stays_bounded_when_every_buffer_is_held() -> None:
    pool = BufferPool(capacity=3, spares=0)
    held = [pool.take(32) for _ in range(10)]
    assert len({id(b) for b in held}) == 10  # ten distinct buffers, as consumers need
    assert len(pool) == 3  # the pool tracks the last three; the others die with their holders
    del held[:7]
    pool.take(32)
    assert pool.reused == 0  # the forgotten ones stay forgotten: a new one is allocated
    del held
    one = pool.take(32)
    assert len(pool) == 1  # a free buffer reused, the spare ones above `spares` dropped
    assert pool.take(32) is not one


def test_a_new_size_drops_the_old_buffers() -> None:
    pool = BufferPool()
    old = pool.take(64)
    del old
    new = pool.take(48)
    assert len(new) == 48
    assert len(pool) == 1  # only the new size is tracked
    assert pool.reused == 0


# -- pooled grabs on a real display -----------------------------------------------------


def test_the_fast_path_is_taken_on_xshm_and_matches_mss(
    sct: mss.MSS, painter: Painter, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="agent"):
        grabber = Grabber(sct)
    assert grabber.path == "xshm-pooled"
    assert "screen capture path: xshm-pooled" in caplog.text
    for n, region in enumerate([FULL] * 4 + [PART] * 4):
        painter.paint(n)
        for _ in range(2):
            raw, width, height = grabber.grab(region)
            assert (width, height) == (region["width"], region["height"])
            assert type(raw) is bytearray
            assert bytes(raw) == expected(sct, region), f"picture {n}, region {region}"
            del raw  # free for the next grab of this size
    assert grabber.pool.reused >= 4  # the buffers were reused, not allocated per grab


def test_a_held_frame_is_never_overwritten(sct: mss.MSS, painter: Painter) -> None:
    """The encoder's last frame and a queue of frames are held while grabs go on: none of
    them changes, and the ones released are reused (two buffers taken in turn would hand the
    held first frame's buffer to the third grab and paint over it)."""
    grabber = Grabber(sct)
    grabber.grab(FULL)  # mss's own first grab: it proves MIT-SHM works
    painter.paint(100)
    last = grabber.grab(FULL)[0]  # like Segmenter._last across unchanged frames
    last_copy = bytes(last)
    backlog: queue.Queue[tuple[bytearray | bytes, bytes]] = queue.Queue(maxsize=8)
    others: list[int] = []
    for n in range(101, 121):
        painter.paint(n)
        raw = grabber.grab(FULL)[0]
        assert raw is not last
        assert bytes(raw) == expected(sct, FULL)
        if n < 105:
            backlog.put((raw, bytes(raw)))  # four frames wait in the encoder's queue
        else:
            others.append(id(raw))
        del raw
    assert bytes(last) == last_copy
    while not backlog.empty():
        raw, copy = backlog.get()
        assert bytes(raw) == copy
    assert grabber.pool.reused >= 10
    assert len(set(others)) < len(others)  # the released frames' buffers did come back


def test_a_region_change_gets_buffers_of_the_new_size(sct: mss.MSS, painter: Painter) -> None:
    grabber = Grabber(sct)
    painter.paint(7)
    for _ in range(3):
        raw = grabber.grab(FULL)[0]
        del raw
    held = grabber.grab(FULL)[0]
    held_copy = bytes(held)
    painter.paint(8)
    for _ in range(3):
        raw, width, height = grabber.grab(PART)
        assert len(raw) == width * height * 4 == PART["width"] * PART["height"] * 4
        assert bytes(raw) == expected(sct, PART)
        del raw
    assert len(grabber.pool) == 1  # the full-size buffers are no longer the pool's
    assert bytes(held) == held_copy  # and the one still held kept its picture


def test_xgetimage_takes_mss_own_grab(
    still: XDisplay, painter: Painter, caplog: pytest.LogCaptureFixture
) -> None:
    with mss.MSS(display=still.display, backend="xgetimage") as plain:
        with caplog.at_level(logging.DEBUG, logger="agent"):
            grabber = Grabber(plain)
        assert grabber.path == "mss"
        assert "no pooled capture: the mss backend is MSSImplXGetImage" in caplog.text
        painter.paint(3)
        first = grabber.grab(PART)[0]
        second = grabber.grab(PART)[0]
        assert first is not second
        assert bytes(first) == bytes(second) == expected(plain, PART)


def test_pooled_false_takes_mss_own_grab(sct: mss.MSS, painter: Painter) -> None:
    grabber = Grabber(sct, pooled=False)
    assert grabber.path == "mss"
    painter.paint(4)
    frames = [grabber.grab(FULL)[0] for _ in range(3)]
    assert len({id(f) for f in frames}) == 3
    assert all(bytes(f) == expected(sct, FULL) for f in frames)
    assert len(grabber.pool) == 0


# -- ScreenCapture on the suite's animated display --------------------------------------


@pytest.mark.display
@pytest.mark.parametrize("pooled", [True, False])
def test_frames_held_by_the_encoder_and_queue_keep_their_pixels(pooled: bool) -> None:
    """A real Segmenter holds its last frame, a queue holds a backlog: their pixels are
    still the ones grabbed, with the pooled path and with mss's own."""
    capture = ScreenCapture(monitor=1, fps=20.0, pooled=pooled)
    segmenter = Segmenter(fps=20.0, segment_seconds=100)
    backlog: queue.Queue[Frame] = queue.Queue(maxsize=8)
    copies: dict[int, bytes] = {}
    encoded: list[Frame] = []
    for frame in capture.frames(threading.Event(), duration=1.5):
        copies[frame.tick] = bytes(frame.raw)
        if frame.tick % 3 == 0 and not backlog.full():
            backlog.put(frame)
        segmenter.push(frame)
        last = segmenter._last
        assert last is not None
        encoded.append(last)
        if len(encoded) > 2:
            encoded.pop(0)
        for held in (*encoded, *backlog.queue):
            assert bytes(held.raw) == copies[held.tick], f"tick {held.tick} was overwritten"
    assert len(copies) >= 20
    assert backlog.qsize() >= 5
    segmenter.flush()
