"""Segments remuxed into one MP4, without re-encoding (PyAV): packets are copied as they are.

Each segment is an MP4 of its own (agent/encode.py: one H.264 track, a keyframe first, time
base 1/fps, pts = capture tick - the segment's first tick). The output has one video track in
a fine time base; segment k's packets are shifted to its signed start, measured from the
first segment's, so a pause between segments stays a pause (the last picture held) and the
file's clock is the recording's. A segment that starts before the previous one ends (a
capture jitter under the chain's tolerance) is moved up to that end: decode times must grow.

All segments must share the first one's H.264 parameters (size, profile: the codec's
extradata). A resolution change starts a new segment with other parameters, which one MP4
track cannot carry: the export then stops with a message naming the segment, and a shorter
range exports.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from shared.vault.errors import ExportError

TIME_BASE = Fraction(1, 90_000)  # MPEG's 90 kHz clock: exact for any frame rate the agent uses


class PacketDigest:
    """SHA-256 over packets, each as its length (8 bytes, big-endian) and its bytes: what a
    custody report records per segment, the same whether read from the segment or the file."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self.count = 0

    def add(self, payload: bytes) -> None:
        self._digest.update(len(payload).to_bytes(8, "big"))
        self._digest.update(payload)
        self.count += 1

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class Piece:
    """One segment to append: its bytes and its signed start, ms after the first one's."""

    label: str
    data: bytes
    offset_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Placed:
    label: str
    start_ms: int  # where it begins in the output
    duration_ms: int  # of its packets in the output
    packets: int
    packets_sha256: str  # hex, over each packet's length and bytes (`shared.vault.report`)


def remux(pieces: Iterable[Piece], out: Path, *, title: str | None = None) -> list[Placed]:
    """Write `pieces` (in order) into `out`; returns where each landed."""
    placed: list[Placed] = []
    try:
        output = av.open(str(out), mode="w", format="mp4")
    except (av.FFmpegError, OSError) as exc:
        raise ExportError(f"cannot write {out}: {exc}") from None
    try:
        if title:
            output.metadata["title"] = title
        stream = None
        extradata: bytes | None = None
        end = 0  # in TIME_BASE units: where the previous segment's last packet ends
        for piece in pieces:
            with av.open(io.BytesIO(piece.data), mode="r", format="mp4") as source:
                if not source.streams.video:
                    raise ExportError(f"{piece.label} holds no video track")
                src = source.streams.video[0]
                if stream is None:
                    stream = output.add_stream_from_template(src)
                    stream.time_base = TIME_BASE
                    extradata = src.codec_context.extradata
                elif src.codec_context.extradata != extradata:
                    raise ExportError(
                        f"{piece.label} was encoded with other parameters than the first "
                        f"segment ({src.codec_context.width}x{src.codec_context.height}: the "
                        "screen's resolution changed); export the ranges before and after it "
                        "separately"
                    )
                start = max(int(Fraction(piece.offset_ms, 1000) / TIME_BASE), end)
                first, last_end, count = None, start, 0
                digest = PacketDigest()
                for packet in source.demux(src):
                    if packet.dts is None:  # the demuxer's flush packet
                        continue
                    digest.add(bytes(packet))
                    tb = packet.time_base
                    pts = packet.pts if packet.pts is not None else packet.dts
                    if first is None:
                        first = packet.dts
                    shift = start - _rescale(first, tb)
                    duration = _rescale(packet.duration or 0, tb)
                    new_pts = _rescale(pts, tb) + shift
                    packet.dts = _rescale(packet.dts, tb) + shift
                    packet.pts = new_pts
                    packet.duration = duration
                    packet.time_base = TIME_BASE
                    packet.stream = stream
                    output.mux(packet)
                    last_end = max(last_end, new_pts + duration)
                    count += 1
                if count == 0:
                    raise ExportError(f"{piece.label} holds no frame")
                placed.append(Placed(
                    label=piece.label, start_ms=_ms(start), duration_ms=_ms(last_end - start),
                    packets=count, packets_sha256=digest.hexdigest(),
                ))
                end = last_end
        if stream is None:
            raise ExportError("nothing to export")
    except av.FFmpegError as exc:
        raise ExportError(f"remuxing failed: {exc}") from None
    finally:
        try:
            output.close()
        except av.FFmpegError as exc:
            raise ExportError(f"finishing {out} failed: {exc}") from None
    return placed


def _rescale(value: int, tb: Fraction) -> int:
    return round(value * tb / TIME_BASE)


def _ms(value: int) -> int:
    return round(value * TIME_BASE * 1000)
