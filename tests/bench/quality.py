"""Picture quality against a lossless reference, with ffmpeg's own `ssim` and `psnr` filters.

No Python dependency: ffmpeg (Debian's) computes SSIM (8x8 blocks, as x264 and the
literature's "SSIM-Y" do) and PSNR, per plane; we keep the luma (Y) figures, which is what
a viewer judges text by. Both sides are brought to the same timeline first: the recording
(one file, or segments joined in order, each lasting its declared duration) and the
reference are each converted to a constant `fps` (a frame held on screen is repeated at each
tick, as a player shows it) and to yuv420p; frame k of one is compared with frame k of the
other (frames matched by time from each one's start).
"""

from __future__ import annotations

import itertools
import math
import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.procs import require_executable

_SSIM = re.compile(r"SSIM Y:[0-9.]+ \(([0-9.]+|inf)\)")
_PSNR = re.compile(r"PSNR y:([0-9.]+|inf)")


class QualityError(RuntimeError):
    """ffmpeg could not compare the two (the message holds its output)."""


@dataclass(frozen=True)
class Quality:
    ssim_db: float  # SSIM-Y as -10 log10(1 - SSIM): ffmpeg's own, with its full precision
    psnr_y: float

    @property
    def ssim_y(self) -> float:
        return 1 - 10 ** (-self.ssim_db / 10)


def capture_reference_argv(display: str, width: int, height: int, fps: float,
                           seconds: float, out: Path) -> list[str]:
    """ffmpeg grabbing the display losslessly (FFV1, the pixels as X holds them)."""
    return [
        require_executable("ffmpeg"), "-hide_banner", "-loglevel", "error", "-nostdin",
        "-f", "x11grab", "-draw_mouse", "0", "-framerate", f"{fps:g}",
        "-video_size", f"{width}x{height}", "-i", display, "-t", f"{seconds:g}",
        "-c:v", "ffv1", "-level", "3", "-slices", "4", "-threads", "2", "-y", str(out),
    ]


def compare(parts: Sequence[tuple[Path, float | None]], reference: Path, fps: float,
            *, frames: int | None = None) -> Quality:
    """SSIM-Y and PSNR-Y of `parts` (files played in order; each lasting the given seconds,
    or its own length when None) against `reference`, over `frames` frames (default: as many
    as both have)."""
    ffmpeg = require_executable("ffmpeg")
    with tempfile.TemporaryDirectory(prefix="bucketreel-quality-") as tmp:
        if len(parts) == 1 and parts[0][1] is None:
            source = ["-i", str(parts[0][0])]
        else:
            listing = Path(tmp) / "parts.txt"
            lines = ["ffconcat version 1.0"]
            for path, seconds in parts:
                lines.append(f"file '{path.resolve()}'")
                if seconds is not None:
                    lines.append(f"duration {seconds:.3f}")
            listing.write_text("\n".join(lines) + "\n")
            source = ["-f", "concat", "-safe", "0", "-i", str(listing)]
        same = f"setpts=PTS-STARTPTS,fps={fps:g},format=yuv420p"
        graph = (
            f"[0:v]{same},split[a1][a2];[1:v]{same},split[b1][b2];"
            "[a1][b1]ssim;[a2][b2]psnr"
        )
        limit = ["-frames:v", str(frames)] if frames else []
        argv = [ffmpeg, "-hide_banner", "-nostdin", *source, "-i", str(reference),
                "-lavfi", graph, *limit, "-f", "null", "-"]
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=1800)
    ssim, psnr = _SSIM.findall(done.stderr), _PSNR.findall(done.stderr)
    if done.returncode != 0 or not ssim or not psnr:
        raise QualityError(f"ffmpeg ssim/psnr failed ({done.returncode}): {done.stderr[-2000:]}")
    return Quality(*(math.inf if v == "inf" else float(v) for v in (ssim[-1], psnr[-1])))


def bytes_at(curve: Sequence[tuple[float, float]], ssim: float) -> float | None:
    """Bytes at `ssim` on a rate-quality curve of (SSIM, bytes) points (SSIM in dB, as
    `Quality.ssim_db`), interpolating log(bytes) linearly between the two points around it;
    None when `ssim` lies outside the curve."""
    points = sorted(curve)
    for (s0, b0), (s1, b1) in itertools.pairwise(points):
        if s0 <= ssim <= s1:
            if s1 == s0:
                return min(b0, b1)
            share = (ssim - s0) / (s1 - s0)
            return math.exp(math.log(b0) + share * (math.log(b1) - math.log(b0)))
    return None
