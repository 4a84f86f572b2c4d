"""What a recording policy costs, roughly, per person: for the admin's policy page.

The one measured figure: README "Packaging and figures", `scripts/bench.sh`, the agent
recording its Chromium office workload (antialiased text, a table, a form typed into, scroll
bursts) at 1920×1080 and 1 fps with its default quality: 27.4 MB per recorded hour (run of
2026-12-04, commit c01c4a4; the scripted bitmap desktop took 11.9, so the busier page is the
basis). The estimate scales it linearly with fps; that is rough (frames identical to the
previous one are skipped, so a still screen costs less, and H.264 spends fewer bytes on a
frame the closer it follows the last one), and it holds for one 1080p monitor: more pixels
cost more.
"""

from __future__ import annotations

from dataclasses import dataclass

MEASURED_MB_PER_HOUR = 27.4
MEASURED_FPS = 1.0
BASIS = (
    f"{MEASURED_MB_PER_HOUR:g} MB per recorded hour at {MEASURED_FPS:g} fps, measured with "
    "scripts/bench.sh (a Chromium office page at 1920×1080: antialiased text, a table, a form "
    "typed into, scrolling; README, \"Packaging and figures\"), scaled linearly by fps"
)
# What an agent records with when neither the policy nor its own configuration says
# (agent.config's defaults; tests/broker/test_admin_fleet.py holds them equal).
AGENT_DEFAULTS: dict[str, float] = {"fps": 1.0, "segment_seconds": 60.0, "idle_seconds": 300.0}
WORKDAY_HOURS = 8
FPS_CHOICES = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def mb_per_hour(fps: float) -> float:
    return MEASURED_MB_PER_HOUR * fps / MEASURED_FPS


@dataclass(frozen=True, slots=True)
class Estimate:
    """A policy's rough cost per person (the agents' defaults where the policy sets nothing)."""

    fps: float
    segment_seconds: float
    idle_seconds: float
    mb_per_hour: float
    gb_per_workday: float
    segments_per_hour: float
    mb_per_segment: float


def estimate(fps: float | None, segment_seconds: float | None, idle: float | None) -> Estimate:
    fps_ = AGENT_DEFAULTS["fps"] if fps is None else fps
    seconds = AGENT_DEFAULTS["segment_seconds"] if segment_seconds is None else segment_seconds
    hourly = mb_per_hour(fps_)
    return Estimate(
        fps=fps_,
        segment_seconds=seconds,
        idle_seconds=AGENT_DEFAULTS["idle_seconds"] if idle is None else idle,
        mb_per_hour=hourly,
        gb_per_workday=hourly * WORKDAY_HOURS / 1000,
        segments_per_hour=3600 / seconds,
        mb_per_segment=hourly * seconds / 3600,
    )
