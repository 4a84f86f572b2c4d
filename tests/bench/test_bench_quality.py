"""The benchmark's quality measure (tests/bench/quality.py), with the real ffmpeg."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pytest

from tests.bench.quality import bytes_at, compare
from tests.support.procs import require_executable


def make(path: Path, codec: list[str], seconds: int = 4) -> Path:
    """A 320x240 test pattern at 1 fps (moving: testsrc2), encoded with `codec`."""
    subprocess.run(
        [require_executable("ffmpeg"), "-hide_banner", "-loglevel", "error", "-y", "-f",
         "lavfi", "-i", f"testsrc2=size=320x240:rate=1:duration={seconds}", *codec, str(path)],
        check=True, timeout=120,
    )
    return path


def test_a_lossless_copy_matches_and_a_coarse_encode_scores_lower(tmp_path: Path) -> None:
    reference = make(tmp_path / "ref.mkv", ["-c:v", "ffv1"])
    same = compare([(make(tmp_path / "same.mkv", ["-c:v", "ffv1"]), None)], reference, 1)
    assert math.isinf(same.psnr_y) or same.psnr_y > 60
    assert same.ssim_y > 0.999
    fine, coarse = (
        compare([(make(tmp_path / f"{crf}.mp4", ["-c:v", "libx264", "-crf", str(crf),
                                                  "-pix_fmt", "yuv420p"]), None)],
                reference, 1)
        for crf in (18, 45)
    )
    assert same.ssim_db > fine.ssim_db > coarse.ssim_db
    assert fine.psnr_y > coarse.psnr_y


def test_segments_are_joined_in_order_each_for_its_declared_duration(tmp_path: Path) -> None:
    reference = make(tmp_path / "ref.mkv", ["-c:v", "ffv1"], seconds=4)
    whole = make(tmp_path / "whole.mkv", ["-c:v", "ffv1"], seconds=4)
    first = make(tmp_path / "a.mkv", ["-c:v", "ffv1", "-t", "2"], seconds=4)
    subprocess.run(
        [require_executable("ffmpeg"), "-hide_banner", "-loglevel", "error", "-y", "-ss", "2",
         "-i", str(whole), "-c:v", "ffv1", str(tmp_path / "b.mkv")],
        check=True, timeout=120,
    )
    joined = compare([(first, 2.0), (tmp_path / "b.mkv", 2.0)], reference, 1)
    assert joined.ssim_y > 0.999
    swapped = compare([(tmp_path / "b.mkv", 2.0), (first, 2.0)], reference, 1)
    assert swapped.ssim_db < joined.ssim_db - 3  # out of order: other pictures compared


def test_bytes_at_interpolates_log_bytes_between_the_points_around() -> None:
    curve = [(30.0, 1000.0), (32.0, 4000.0), (28.0, 500.0)]
    assert bytes_at(curve, 31.0) == pytest.approx(2000.0)  # halfway in log: the geometric mean
    assert bytes_at(curve, 28.0) == pytest.approx(500.0)
    assert bytes_at(curve, 27.0) is None  # outside the curve: no extrapolation
    assert bytes_at(curve, 33.0) is None
