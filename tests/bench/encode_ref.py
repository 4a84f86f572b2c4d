"""Encode a lossless reference capture with the agent's own encoder, in a process of its own.

    python -m tests.bench.encode_ref REF.mkv OUTDIR --crf 28 [--x264-params P] [--fps 1]
        [--segment-seconds 60] [--codec h264|av1] [--decode-only]

The reference's frames (BGR0, exactly as captured) go through the agent's real `Segmenter`
(agent/encode.py: the unchanged-frame skip, the colour conversion, libx264 with the given
settings, the MP4 muxing), each frame at the tick its timestamp names. The segments are
written to OUTDIR as 00000.mp4, 00001.mp4, … and one JSON line is printed:

    {"bytes": …, "encode_cpu": CPU s spent in the encoder (push and flush, all threads),
     "maxrss": peak RSS of this process in bytes, "segments": [[file, seconds], …],
     "frames": frames encoded, "unchanged": frames skipped as identical}

`--decode-only` reads the reference without encoding: its peak RSS is the baseline to
subtract from an encoding run's, which leaves what the encoder itself holds.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av

from agent.capture import Frame
from agent.encode import (
    AV1_PARAMS,
    AV1_PRESET,
    DEFAULT_PRESET,
    DEFAULT_TUNE,
    DEFAULT_X264_PARAMS,
    Segment,
    Segmenter,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def reference_frames(path: Path, fps: float) -> Iterator[Frame]:
    """The reference's frames as the agent's `Frame`s (BGRA layout, tick from the pts)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        first: float | None = None
        last_tick = -1
        for decoded in container.decode(stream):
            if decoded.pts is None or decoded.time_base is None:
                continue
            at = float(decoded.pts * decoded.time_base)
            first = at if first is None else first
            tick = round((at - first) * fps)
            if tick <= last_tick:
                continue
            last_tick = tick
            if decoded.format.name not in ("bgr0", "bgra"):
                decoded = decoded.reformat(format="bgra")
            plane = decoded.planes[0]
            width, height = decoded.width, decoded.height
            if plane.line_size == width * 4:
                raw = bytes(plane)[: width * height * 4]
            else:
                view = memoryview(plane)
                raw = b"".join(
                    view[y * plane.line_size : y * plane.line_size + width * 4]
                    for y in range(height)
                )
            yield Frame(raw=raw, width=width, height=height, tick=tick,
                        captured_at=T0 + timedelta(seconds=tick / fps))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("reference", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--crf", type=int, default=28)
    parser.add_argument("--preset", default=DEFAULT_PRESET)
    parser.add_argument("--tune", default=DEFAULT_TUNE or "")
    parser.add_argument("--x264-params", default=DEFAULT_X264_PARAMS)
    parser.add_argument("--codec", default="h264", choices=("h264", "av1"),
                        help="av1: the av1 level's encoder")
    parser.add_argument("--av1-preset", default=AV1_PRESET)
    parser.add_argument("--av1-params", default=AV1_PARAMS)
    parser.add_argument("--fps", type=float, default=1.0)
    parser.add_argument("--segment-seconds", type=float, default=60.0)
    parser.add_argument("--decode-only", action="store_true")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    segmenter = Segmenter(
        fps=args.fps, segment_seconds=args.segment_seconds, preset=args.preset,
        tune=args.tune or None, crf=args.crf, x264_params=args.x264_params, codec=args.codec,
        av1=(args.av1_preset, args.av1_params),
    )
    done: list[Segment] = []
    cpu = 0.0
    for frame in reference_frames(args.reference, args.fps):
        if args.decode_only:
            continue
        started = time.process_time()
        done.extend(segmenter.push(frame))
        cpu += time.process_time() - started
    started = time.process_time()
    last = None if args.decode_only else segmenter.flush()
    cpu += time.process_time() - started
    if last is not None:
        done.append(last)
    segments = []
    for segment in done:
        name = f"{segment.seq:05d}.mp4"
        (args.out / name).write_bytes(segment.data)
        segments.append([name, segment.duration_ms / 1000])
    print(json.dumps({
        "bytes": sum(s.size for s in done), "encode_cpu": cpu,
        "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "segments": segments, "frames": sum(s.frames for s in done),
        "unchanged": segmenter.unchanged,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
