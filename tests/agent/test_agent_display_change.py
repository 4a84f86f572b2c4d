"""A display change mid-recording starts a new segment instead of crashing.

The suite's Xvfb cannot change its resolution (its RandR reports one fixed size and refuses
`xrandr --fb`/`--mode` changes), so the monitor layout is the one thing a stand-in provides
here: `layout` returns the real monitors at first, then a smaller region (as after a switch
to a lower resolution), then a region larger than the screen (a stale layout: the grab
fails and the capture must read the layout again). Every grab is real mss on real Xvfb.
"""

from __future__ import annotations

import io
import threading
from typing import Any

import av
import pytest

from agent.capture import Frame, ScreenCapture, current_layout
from agent.encode import Segmenter
from tests.conftest import DISPLAY_SIZE

TICKS = 3  # a segment's worth of ticks


class ChangingLayout:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, sct: Any) -> list[dict[str, Any]]:
        self.calls += 1
        real = current_layout(sct)
        if self.calls == 2:  # a lower resolution
            small = {"left": 0, "top": 0, "width": 640, "height": 360}
            return [small, small]
        if self.calls == 3:  # stale: bigger than the screen, the grab fails
            big = {"left": 0, "top": 0, "width": 4000, "height": 4000}
            return [big, big]
        return real


@pytest.mark.display
def test_a_resolution_change_starts_a_new_segment() -> None:
    layout = ChangingLayout()
    capture = ScreenCapture(monitor=1, fps=20, refresh_ticks=TICKS, layout=layout)
    frames: list[Frame] = list(capture.frames(threading.Event(), duration=9 * TICKS / 20))

    width, height = DISPLAY_SIZE
    sizes = [(f.width, f.height) for f in frames]
    assert sizes[:TICKS] == [(width, height)] * TICKS
    assert sizes[TICKS : 2 * TICKS] == [(640, 360)] * TICKS
    assert set(sizes[2 * TICKS :]) == {(width, height)}  # recovered from the failed grab
    assert len(frames) >= 3 * TICKS
    assert layout.calls >= 4
    assert capture.layout_changes == 3  # smaller, stale (grab failed), real again

    segmenter = Segmenter(fps=20, segment_seconds=100)  # one slot: only size cuts segments
    segments = [s for f in frames for s in segmenter.push(f)]
    last = segmenter.flush()
    assert last is not None
    segments.append(last)
    assert [(s.width, s.height) for s in segments] == [
        (width, height), (640, 360), (width, height)
    ]
    for segment in segments:  # each plays on its own, at its own size
        with av.open(io.BytesIO(segment.data)) as container:
            decoded = [f for f in container.decode(video=0)]
        assert {(f.width, f.height) for f in decoded} == {(segment.width, segment.height)}
