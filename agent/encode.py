"""H.264 (or, opt-in, AV1) encoding of frames into self-contained MP4 segments, entirely in
memory (G7).

Each segment is a new container and a new encoder, so it starts with a keyframe and plays on
its own. The MP4 is written with `movflags=faststart` (moov before mdat) so a browser can
start playing before the whole object has arrived. The time base is 1/fps and a frame's pts
is its capture tick minus the segment's first tick: a skipped tick leaves a gap in the
timeline instead of speeding the video up.

Segments are cut on a fixed grid of ticks: with `segment_seconds * fps = N` ticks per
segment, tick t belongs to slot t // N. A segment ends when a frame of a later slot arrives,
when the frame size changes (monitor resolution change), or at `flush()`.

Unchanged frames are not encoded. The `Segmenter` compares each frame with the previous one
(a `memcmp` of the raw capture buffers: under a millisecond for 1920x1080, no colour
conversion, no encoder work) and drops it when identical, so the MP4 has a variable frame
rate: each encoded frame carries its real tick as pts and stays on screen until the next
one. The first frame of every segment is always encoded (a segment starts with a keyframe),
and when the last frames of a segment were unchanged the last image is encoded once more at
the last tick seen, so the segment's playback ends exactly when its wall-clock span does.
A static screen costs two tiny frames per segment.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import math
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

import av

from agent.capture import Frame
from agent.cpu import STAGES
from agent.errors import EncodeError
from shared.wire import MAX_SEGMENT_DURATION_MS, CustodyProof, UploadRequest

DEFAULT_PRESET = "veryfast"
DEFAULT_TUNE = "stillimage"
DEFAULT_CRF = 28
# Chosen by measurement at 1920x1080, 1 fps (scripts/bench.sh, README "Packaging and
# figures"), against the plain `ffmpeg -f x11grab … -preset veryfast -crf 30` at equal SSIM-Y:
# - threads=1: libx264's default runs a thread per ~0.7 core, each with its own frames (agent
#   steady RSS 355 MB); at 1 fps one thread keeps up with ease.
# - bframes=0: B-frames saved about 2 % of the bytes for twice the encoder's memory.
# - rc-lookahead=2: with no lookahead libx264 silently turns off macroblock-tree rate control,
#   which costs 12-30 % of the bytes on screen content; 2 frames (about 10 MB at 1080p) keep
#   it, 4 frames (21 MB) saved no more. sync-lookahead=0: no lookahead thread.
# - me=umh, merange=256: x264's default hexagon search looks 16 px away at most (it caps any
#   range at 16), so a scrolled page, which moves by hundreds of pixels between two frames a
#   second apart, was coded almost as a new picture; the uneven multi-hexagon search finds it.
#   On a Chromium office page this halved the bytes at equal SSIM (1.10x ffmpeg's -> 0.55x).
# Everything goes in `x264-params`: libx264 drops a codec option it does not know without a
# word (`bframes` as a codec option once left B-frames on); a test reads back what it used,
# and another decodes what these settings encode and compares it block by block.
DEFAULT_X264_PARAMS = (
    "threads=1:rc-lookahead=2:sync-lookahead=0:bframes=0:me=umh:merange=256"
)
# The av1 level: SVT-AV1 (`libsvtav1` in the PyAV wheel), chosen by measurement
# (README "Packaging and figures"; a decode-and-compare test in tests/agent):
# - preset 8: presets 10 and 12 of this build wrote blocks of solid grey or black into a
#   screen picture (a 16x16 block off by 15 levels on average; preset 8: under 9);
# - scm=1: the screen-content tools always on (palette, intra block copy): on a Chromium
#   office capture 0.63x the bytes of the plain ffmpeg command at a higher SSIM, where
#   without them (SVT's own detection) AV1 needed more bytes than that command;
# - rtc=1: the real-time mode, no frames held back: 210 MB in the encoding process
#   against 460 MB without it, for about 10 % more bytes;
# - lp=1: one level of parallelism (each more costs memory; 1 fps needs none);
# - keyint=-1: no keyframe after the first (each segment is a new encoder, which starts
#   with one);
# - CRF 42 (QUALITY): about the SSIM of the standard H.264 level (CRF 28).
AV1_PRESET = "8"
AV1_PARAMS = "rtc=1:scm=1:lp=1:keyint=-1"
CODECS = {"h264": "libx264", "av1": "libsvtav1"}


# The policy's quality levels (shared.wire.QualityLevel) as codec and CRF. The H.264 levels
# keep every other setting above; "av1" is AV1 (SVT-AV1 in the PyAV wheel, see
# AV1_* below). An agent's own `crf` (file or flag) replaces an H.264 level's CRF; it does
# not apply to AV1, whose CRF scale (0-63) is another.
@dataclass(frozen=True, slots=True)
class Encoding:
    codec: str  # "h264" or "av1"
    crf: int


QUALITY: dict[str, Encoding] = {
    "high": Encoding("h264", 24),
    "standard": Encoding("h264", DEFAULT_CRF),
    "compact": Encoding("h264", 32),
    "av1": Encoding("av1", 42),
}
DEFAULT_QUALITY = "standard"


def encoder_options(quality: str, crf: int | None = None) -> dict[str, Any]:
    """The `Segmenter`'s codec and CRF for a quality level (an unknown level: standard)."""
    level = QUALITY.get(quality, QUALITY[DEFAULT_QUALITY])
    if level.codec == "h264" and crf is not None:
        return {"codec": "h264", "crf": crf}
    return {"codec": level.codec, "crf": level.crf}


def x264_options(preset: str, tune: str | None, crf: int, x264_params: str) -> dict[str, str]:
    """The codec options of one segment's encoder (libx264's own settings in `x264-params`)."""
    options = {"preset": preset, "crf": str(crf), "threads": "1", "x264-params": x264_params}
    if tune:
        options["tune"] = tune
    return options


def av1_options(crf: int, preset: str = AV1_PRESET, params: str = AV1_PARAMS) -> dict[str, str]:
    """The codec options of one segment's AV1 encoder (SVT-AV1's own in `svtav1-params`)."""
    return {"preset": preset, "crf": str(crf), "svtav1-params": params}


def codec_string(data: bytes) -> str | None:
    """The segment's codec as RFC 6381 names it for a browser (`avc1.640028`, `av01.0.08M.08`),
    read from the MP4's decoder configuration box; None when there is none."""
    at = data.find(b"avcC")
    if at >= 0 and len(data) >= at + 8:
        profile, compat, level = data[at + 5], data[at + 6], data[at + 7]
        return f"avc1.{profile:02X}{compat:02X}{level:02X}"
    at = data.find(b"av1C")
    if at >= 0 and len(data) >= at + 7:
        first, second = data[at + 5], data[at + 6]
        profile, level = first >> 5, first & 0x1F
        tier = "H" if second & 0x80 else "M"
        depth = 12 if second & 0x40 and second & 0x20 else 10 if second & 0x40 else 8
        return f"av01.{profile}.{level:02d}{tier}.{depth:02d}"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Segment:
    """One encoded MP4 segment, held in memory."""

    seq: int
    data: bytes = field(repr=False)
    started_at: datetime  # UTC wall clock of the first frame
    duration_ms: int
    frames: int
    width: int
    height: int
    custody: CustodyProof | None = None  # its signed chain-of-custody record (agent.custody)
    codec: str | None = None  # RFC 6381, e.g. avc1.640028 (`codec_string`)

    @property
    def size(self) -> int:
        return len(self.data)

    def sha256_b64(self) -> str:
        """Base64 SHA-256 of the bytes, as the `x-amz-checksum-sha256` header carries it."""
        with STAGES.stage("hash"):
            return base64.b64encode(hashlib.sha256(self.data).digest()).decode("ascii")

    def md5_b64(self) -> str:
        """Base64 MD5 of the bytes, as the `Content-MD5` header carries it."""
        with STAGES.stage("hash"):
            digest = hashlib.md5(self.data, usedforsecurity=False).digest()
            return base64.b64encode(digest).decode("ascii")

    def upload_request(self) -> UploadRequest:
        """What the agent declares to the broker before uploading this segment."""
        return UploadRequest(
            size=self.size,
            sha256=self.sha256_b64(),
            md5=self.md5_b64(),
            started_at=self.started_at,
            duration_ms=self.duration_ms,
            custody=self.custody,
            codec=self.codec,
        )


def frame_rate(fps: float) -> Fraction:
    """`fps` as an exact fraction (29.97 -> 2997/100); the time base is its inverse."""
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError("fps must be a positive number")
    return Fraction(fps).limit_denominator(1001)


def even_size(width: int, height: int) -> tuple[int, int]:
    """The largest even size that fits (yuv420p needs even dimensions)."""
    even_w, even_h = width - width % 2, height - height % 2
    if even_w < 2 or even_h < 2:
        raise EncodeError(f"a {width}x{height} image is too small to encode")
    return even_w, even_h


class SegmentEncoder:
    """Encodes the frames of one segment into an in-memory MP4."""

    def __init__(
        self,
        *,
        seq: int,
        fps: float,
        width: int,
        height: int,
        first_tick: int,
        started_at: datetime,
        preset: str = DEFAULT_PRESET,
        tune: str | None = DEFAULT_TUNE,
        crf: int = DEFAULT_CRF,
        x264_params: str = DEFAULT_X264_PARAMS,
        codec: str = "h264",
        av1: tuple[str, str] = (AV1_PRESET, AV1_PARAMS),  # preset, svtav1-params
    ) -> None:
        if codec not in CODECS:
            raise EncodeError(f"unknown codec {codec!r} (known: {', '.join(CODECS)})")
        self.seq = seq
        self.fps = fps
        self.width, self.height = width, height  # of the incoming frames
        self.first_tick = first_tick
        self.last_tick: int | None = None
        self.frames = 0
        self.started_at = started_at.astimezone(UTC)
        self._time_base = 1 / frame_rate(fps)
        out_w, out_h = even_size(width, height)
        self._buffer = io.BytesIO()
        if codec == "av1":
            # errors only: SVT-AV1 prints its banner and settings to stderr, outside the log
            os.environ.setdefault("SVT_LOG", "1")
            options = av1_options(crf, *av1)
        else:
            options = x264_options(preset, tune, crf, x264_params)
        try:
            # faststart rewrites the file at close; on a BytesIO it needs `io_open` to reopen
            # the output for reading: hand it a snapshot of what has been written so far.
            # The callback must not hold `self`: container -> callback -> self -> container
            # is a reference cycle that keeps the whole x264 context (over 100 MB at 1080p)
            # alive until the cyclic garbage collector happens to run.
            buffer = self._buffer
            self._container = av.open(
                buffer,
                mode="w",
                format="mp4",
                options={"movflags": "faststart"},
                io_open=lambda url, flags, options: io.BytesIO(buffer.getvalue()),
            )
            stream = self._container.add_stream(CODECS[codec], rate=frame_rate(fps))
            if not isinstance(stream, av.video.stream.VideoStream):
                raise EncodeError(f"{CODECS[codec]} is not a video encoder")
            self._stream = stream
            self._stream.width = out_w
            self._stream.height = out_h
            self._stream.pix_fmt = "yuv420p"
            self._stream.codec_context.time_base = self._time_base
            self._stream.options = dict[str, object](options)
            self._canvas = av.VideoFrame(out_w, out_h, "bgra")
        except av.FFmpegError as exc:
            raise EncodeError(f"cannot set up the {codec} encoder: {exc}") from exc

    @property
    def out_size(self) -> tuple[int, int]:
        return self._stream.width, self._stream.height

    def add(self, raw: bytes | bytearray, tick: int) -> None:
        """Encode one BGRA image (`height` rows of `width * 4` bytes) captured at `tick`."""
        if len(raw) != self.width * self.height * 4:
            raise EncodeError(
                f"a frame of {len(raw)} bytes in a {self.width}x{self.height} segment"
            )
        if tick < self.first_tick or (self.last_tick is not None and tick <= self.last_tick):
            raise EncodeError(f"tick {tick} is not after the previous frame's tick")
        try:
            with STAGES.stage("convert"):
                self._fill(raw)
                # threads=1: PyAV's default (0) lets libswscale start a worker per CPU for
                # each segment's converter; at one frame a second they only cost their start
                # and hand-offs (perf: 2 swscale threads per segment on 2 cores, more on a
                # larger workstation), and their CPU fell outside this stage's clock.
                picture = self._canvas.reformat(format="yuv420p", threads=1)
            picture.pts = tick - self.first_tick
            picture.time_base = self._time_base
            with STAGES.stage("encode"):
                for packet in self._stream.encode(picture):
                    self._container.mux(packet)
        except av.FFmpegError as exc:
            raise EncodeError(f"encoding segment {self.seq} failed: {exc}") from exc
        self.last_tick = tick
        self.frames += 1

    def _fill(self, raw: bytes | bytearray) -> None:
        """Copy the image into the canvas frame, cropped to the even output size.

        One canvas per segment, reused for every frame: the colour conversion reads it, and
        the encoder keeps its own copy of the converted picture.
        """
        plane = self._canvas.planes[0]
        src_stride, dst_stride = self.width * 4, plane.line_size
        out_w, out_h = self.out_size
        src, dst = memoryview(raw), memoryview(plane)
        if src_stride == dst_stride and out_h == self.height:
            dst[: len(src)] = src  # one copy of the whole image
            return
        row = out_w * 4
        for y in range(out_h):
            dst[y * dst_stride : y * dst_stride + row] = src[y * src_stride : y * src_stride + row]

    def finish(self) -> Segment:
        """Flush the encoder, close the container and return the segment."""
        if self.last_tick is None:
            self.abort()
            raise EncodeError(f"segment {self.seq} has no frame")
        try:
            with STAGES.stage("encode"):
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
                self._container.close()
        except av.FFmpegError as exc:
            raise EncodeError(f"finishing segment {self.seq} failed: {exc}") from exc
        ticks = self.last_tick + 1 - self.first_tick
        duration_ms = max(1, round(ticks * 1000 / self.fps))
        out_w, out_h = self.out_size
        data = self._buffer.getvalue()
        self._buffer = io.BytesIO()
        return Segment(
            seq=self.seq,
            data=data,
            started_at=self.started_at,
            duration_ms=duration_ms,
            frames=self.frames,
            width=out_w,
            height=out_h,
            codec=codec_string(data),
        )

    def abort(self) -> None:
        """Drop the segment (e.g. on shutdown after an error)."""
        with contextlib.suppress(av.FFmpegError, ValueError):
            self._container.close()
        self._buffer = io.BytesIO()


def same_image(a: Frame, b: Frame) -> bool:
    """Whether two captures are identical, byte for byte (a memcmp of the raw buffers)."""
    return (a.width, a.height) == (b.width, b.height) and a.raw == b.raw


class Segmenter:
    """Cuts a stream of frames into segments of `segment_seconds`, numbered from `first_seq`.

    Frames identical to the previous one are skipped (counted in `unchanged`), see above.
    """

    def __init__(
        self,
        *,
        fps: float,
        segment_seconds: float,
        first_seq: int = 0,
        preset: str = DEFAULT_PRESET,
        tune: str | None = DEFAULT_TUNE,
        crf: int = DEFAULT_CRF,
        x264_params: str = DEFAULT_X264_PARAMS,
        codec: str = "h264",
        av1: tuple[str, str] = (AV1_PRESET, AV1_PARAMS),  # preset, svtav1-params
    ) -> None:
        frame_rate(fps)  # validates
        if codec not in CODECS:
            raise ValueError(f"unknown codec {codec!r} (known: {', '.join(CODECS)})")
        if not (segment_seconds > 0 and math.isfinite(segment_seconds)):
            raise ValueError("segment_seconds must be a positive number")
        if segment_seconds * 1000 > MAX_SEGMENT_DURATION_MS:
            raise ValueError(f"segments last at most {MAX_SEGMENT_DURATION_MS // 1000} s")
        self.fps = fps
        self.ticks_per_segment = max(1, round(segment_seconds * fps))
        self.next_seq = first_seq
        self._options: dict[str, Any] = {
            "preset": preset, "tune": tune, "crf": crf, "x264_params": x264_params,
            "codec": codec, "av1": av1,
        }
        self._current: SegmentEncoder | None = None
        self._slot = -1
        self._last: Frame | None = None  # the last frame encoded in the current segment
        self._held_tick: int | None = None  # last tick of an unchanged frame not encoded
        self.unchanged = 0  # frames skipped because identical to the previous one

    def push(self, frame: Frame) -> list[Segment]:
        """Encode `frame`; returns the segment it closed, if any."""
        done: list[Segment] = []
        slot = frame.tick // self.ticks_per_segment
        current = self._current
        if current is not None and (
            slot != self._slot or (frame.width, frame.height) != (current.width, current.height)
        ):
            done.append(self._close(current))
            current = None
        elif current is not None and self._last is not None and self._unchanged(frame, self._last):
            self._held_tick = frame.tick
            self.unchanged += 1
            return done
        if current is None:
            current = SegmentEncoder(
                seq=self.next_seq,
                fps=self.fps,
                width=frame.width,
                height=frame.height,
                first_tick=frame.tick,
                started_at=frame.captured_at,
                **self._options,
            )
            self.next_seq += 1
            self._current, self._slot = current, slot
        current.add(frame.raw, frame.tick)
        self._last, self._held_tick = frame, None
        return done

    @staticmethod
    def _unchanged(frame: Frame, last: Frame) -> bool:
        with STAGES.stage("compare"):
            return same_image(frame, last)

    def _close(self, current: SegmentEncoder) -> Segment:
        self._current = None
        last, held = self._last, self._held_tick
        self._last = self._held_tick = None
        if last is not None and held is not None:
            # the screen did not change since `last`: show it until the last tick seen
            current.add(last.raw, held)
        return current.finish()

    def flush(self) -> Segment | None:
        """Close the segment in progress (end of recording); None if there is none."""
        current = self._current
        return self._close(current) if current is not None else None

    def abort(self) -> None:
        current, self._current = self._current, None
        self._last = self._held_tick = None
        if current is not None:
            current.abort()
