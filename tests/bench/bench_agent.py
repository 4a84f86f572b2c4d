"""Benchmark: the agent against the plain `ffmpeg -f x11grab … -c:v libx264` at equal quality.

    bash scripts/bench.sh [--minutes 2] [--workloads desktop,office,motion] [--variants …]
        [--agent PATH] [--json FILE] [--agent-only]

Not part of the test suite (pytest never collects this file: it is not named test_*.py).

What it does, all on this machine with real parts, for each workload (workloads.py: the
scripted X11 desktop, a Chromium office page, full-screen motion), each on a fresh
1920x1080 Xvfb:
  1. reference: ffmpeg grabs the screen losslessly (FFV1) at the benchmark's fps;
  2. rate and quality: the reference's frames are encoded at several CRFs by the agent's own
     encoder (encode_ref.py: the agent's Segmenter and settings, in a process of its own) and
     by the plain ffmpeg command (input: the reference); SSIM-Y and PSNR-Y of each against the
     reference (quality.py: ffmpeg's ssim and psnr filters, frames matched by time); the
     agent's bytes at the SSIM of ffmpeg at its CRF (log-interpolated between the CRFs) give
     "bytes at equal SSIM";
  3. live: the agent records the workload for `--minutes` into a real bucket (moto) through
     a real broker, then the plain ffmpeg command records it, one after the other, each
     sampled once a second from /proc (CPU, RSS); the agent reports its CPU by pipeline stage
     (agent/cpu.py). Their pictures are not compared with the reference: each capture
     samples the screen at its own phase (a start a few hundred ms apart), so a scroll or a
     typed word lands in different frames and SSIM measures the timing, not the encoder
     (measured: 12-17 dB on office for both). Step 2 gives each encoder exactly the same
     frames, and its ffmpeg encode is the plain command's own encoder and options.

The reference command is what a user runs: `ffmpeg -f x11grab -framerate 1 -i :N
-c:v libx264 -preset veryfast -crf 30 -pix_fmt yuv420p out.mp4`, its defaults otherwise
(one file, a keyframe every 250 frames, B-frames, a lookahead, threads), plus `-draw_mouse 0`
so both record the same picture (mss does not capture the cursor).

Figures:
  CPU s / recorded min   user+system CPU of the recorder's process tree (os.wait4 rusage),
                         start-up and final flush included, per minute recorded;
  steady CPU             the same from /proc samples after the warm-up (25 % of the run,
                         at most 60 s), so start-up cost is left out;
  bytes / recorded hour  the bytes each produced, scaled to an hour;
  peak RSS               the highest VmRSS seen (and the kernel's maxrss);
  steady RSS             the median VmRSS after the warm-up;
  RSS growth             median VmRSS of the last fifth of the run against the median of the
                         first fifth after the warm-up (meaningful on a long soak).
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

import av

from agent.encode import DEFAULT_CRF, DEFAULT_PRESET, DEFAULT_TUNE, DEFAULT_X264_PARAMS, QUALITY
from tests.bench.procstat import Sample, sample
from tests.bench.quality import Quality, bytes_at, capture_reference_argv, compare
from tests.bench.workloads import DESCRIPTIONS, HEIGHT, WIDTH, WORKLOADS, clean_env, screen
from tests.support.api import Api, enrollment_code, make_tenant, make_user
from tests.support.broker import BrokerCommandError, BrokerProcess
from tests.support.display import XDisplay
from tests.support.procs import MissingDependencyError, ProcessStartError, require_executable
from tests.support.s3 import S3Endpoint, run_moto

MB = 1_000_000
REFERENCE_PRESET, REFERENCE_CRF = "veryfast", 30

TARGET_BYTES = {"office": 0.9, "desktop": 0.9, "motion": 1.0}  # at equal SSIM-Y
TARGET_STEADY_CPU = {"office": 0.7, "desktop": 0.7, "motion": 0.8}
TARGET_STEADY_RSS = 150 * MB
TARGET_RSS_GROWTH = 0.05
TARGET_AV1_BYTES = 0.8  # the opt-in av1 mode, on office

# Encoder settings to draw the frontier with (--variants): (tune, libx264 params, preset)
VARIANTS: dict[str, tuple[str, str, str]] = {
    "shipped": (DEFAULT_TUNE or "", DEFAULT_X264_PARAMS, DEFAULT_PRESET),
    # before issue 19: no lookahead (so no macroblock-tree), x264's hexagon search (16 px)
    "la0-hex": ("stillimage", "threads=1:rc-lookahead=0:sync-lookahead=0:bframes=0",
                "veryfast"),
    "la2-hex": ("stillimage", "threads=1:rc-lookahead=2:sync-lookahead=0:bframes=0",
                "veryfast"),
    "la4-hex": ("stillimage", "threads=1:rc-lookahead=4:sync-lookahead=0:bframes=0",
                "veryfast"),
    "la0-umh256": ("stillimage",
                   "threads=1:rc-lookahead=0:sync-lookahead=0:bframes=0:me=umh:merange=256",
                   "veryfast"),
    "la2-umh64": ("stillimage",
                  "threads=1:rc-lookahead=2:sync-lookahead=0:bframes=0:me=umh:merange=64",
                  "veryfast"),
    "la2-umh128": ("stillimage",
                   "threads=1:rc-lookahead=2:sync-lookahead=0:bframes=0:me=umh:merange=128",
                   "veryfast"),
    "la2-umh256-subme1": ("stillimage", "threads=1:rc-lookahead=2:sync-lookahead=0:bframes=0"
                          ":me=umh:merange=256:subme=1", "veryfast"),
    # issue 19's CPU: a 1-frame lookahead (macroblock-tree still on), with and without subme=1
    "la1-umh256": ("stillimage",
                   "threads=1:rc-lookahead=1:sync-lookahead=0:bframes=0:me=umh:merange=256",
                   "veryfast"),
    "la1-umh256-subme1": ("stillimage", "threads=1:rc-lookahead=1:sync-lookahead=0:bframes=0"
                          ":me=umh:merange=256:subme=1", "veryfast"),
    "la2-umh256": ("stillimage",
                   "threads=1:rc-lookahead=2:sync-lookahead=0:bframes=0:me=umh:merange=256",
                   "veryfast"),
    "la4-umh256": ("stillimage",
                   "threads=1:rc-lookahead=4:sync-lookahead=0:bframes=0:me=umh:merange=256",
                   "veryfast"),
    "la10-b3-hex": ("stillimage", "threads=1:rc-lookahead=10:sync-lookahead=0:bframes=3",
                    "veryfast"),
    # issue 19's CPU, the cheaper presets with the wide search kept (it is what finds a
    # scroll): superfast (subme=1, no macroblock-tree), with the 2-frame tree put back, and
    # ultrafast (no CABAC, no deblocking, no AQ, subme=0, one partition size), with CABAC
    # put back
    "sf-umh256": ("stillimage", "threads=1:bframes=0:me=umh:merange=256", "superfast"),
    "sf-la2-umh256": ("stillimage", "threads=1:rc-lookahead=2:sync-lookahead=0:mbtree=1"
                      ":bframes=0:me=umh:merange=256", "superfast"),
    "sf-la1-umh256": ("stillimage", "threads=1:rc-lookahead=1:sync-lookahead=0:mbtree=1"
                      ":bframes=0:me=umh:merange=256", "superfast"),
    "sf-la2-umh128": ("stillimage", "threads=1:rc-lookahead=2:sync-lookahead=0:mbtree=1"
                      ":bframes=0:me=umh:merange=128", "superfast"),
    # veryfast without its inter partitions below 16x16 (superfast's), subme=2 kept
    "la2-umh256-p16": ("stillimage", "threads=1:rc-lookahead=2:sync-lookahead=0:bframes=0"
                       ":me=umh:merange=256:partitions=i8x8,i4x4", "veryfast"),
    "la2-umh256-p16-subme3": ("stillimage", "threads=1:rc-lookahead=2:sync-lookahead=0"
                              ":bframes=0:me=umh:merange=256:partitions=i8x8,i4x4:subme=3",
                              "veryfast"),
    "la4-umh256-p16": ("stillimage", "threads=1:rc-lookahead=4:sync-lookahead=0:bframes=0"
                       ":me=umh:merange=256:partitions=i8x8,i4x4", "veryfast"),
    "uf-umh256": ("stillimage", "threads=1:bframes=0:me=umh:merange=256", "ultrafast"),
    "uf-cabac-umh256": ("stillimage", "threads=1:bframes=0:cabac=1:me=umh:merange=256",
                        "ultrafast"),
}
# the av1 level (AV1, agent.encode.AV1_*): its CRF scale is SVT-AV1's (0-63)
AV1_VARIANT = "av1"
AV1_CRFS = (34, 38, 42, 46, 50)
AGENT_CRFS = (24, 26, 28, 30, 32)
FFMPEG_CRFS = (26, 28, 30, 32, 34)


class BenchError(RuntimeError):
    """The benchmark could not run or a recorder failed; the message says why."""


@dataclass(frozen=True)
class Media:
    files: int
    size: int  # bytes
    packets: int  # encoded frames
    seconds: float  # duration read back from the files


@dataclass
class Run:
    name: str
    recorded_seconds: float
    wall_seconds: float
    cpu_total: float
    maxrss: int
    media: Media
    samples: list[Sample] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)  # the agent's CPU by stage

    @property
    def warmup(self) -> float:
        return min(60.0, 0.25 * self.recorded_seconds)

    def steady(self) -> list[Sample]:
        return [s for s in self.samples if self.warmup <= s.at <= self.recorded_seconds]

    @property
    def cpu_per_minute(self) -> float:
        return self.cpu_total / (self.recorded_seconds / 60)

    @property
    def steady_cpu_per_minute(self) -> float:
        steady = self.steady()
        if len(steady) < 2:
            return float("nan")
        first, last = steady[0], steady[-1]
        return (last.cpu - first.cpu) / ((last.at - first.at) / 60)

    @property
    def bytes_per_hour(self) -> float:
        return self.media.size / self.recorded_seconds * 3600

    @property
    def peak_rss(self) -> int:
        return max([self.maxrss, *(s.rss for s in self.samples)])

    @property
    def steady_rss(self) -> float:
        steady = self.steady()
        return statistics.median(s.rss for s in steady) if steady else float("nan")

    @property
    def rss_growth(self) -> float:
        steady = self.steady()
        fifth = len(steady) // 5
        if fifth < 1:
            return float("nan")
        early = statistics.median(s.rss for s in steady[:fifth])
        late = statistics.median(s.rss for s in steady[-fifth:])
        return (late - early) / early

    def summary(self) -> dict[str, object]:
        return {
            "name": self.name, "recorded_seconds": self.recorded_seconds,
            "wall_seconds": self.wall_seconds, "cpu_seconds": self.cpu_total,
            "cpu_per_recorded_minute": self.cpu_per_minute,
            "steady_cpu_per_recorded_minute": self.steady_cpu_per_minute,
            "bytes_per_recorded_hour": self.bytes_per_hour, "peak_rss": self.peak_rss,
            "steady_rss": self.steady_rss, "rss_growth": self.rss_growth,
            "cpu_by_stage": self.stages,
            **{f"media_{k}": v for k, v in asdict(self.media).items()},
            "samples": [[round(s.at, 2), round(s.cpu, 2), s.rss] for s in self.samples],
        }


@dataclass(frozen=True)
class Point:
    """One encoding of the reference: its settings, size and quality."""

    crf: int
    size: int
    quality: Quality
    encode_cpu: float = float("nan")  # CPU s in the encoder (agent's encoder only)
    encoder_rss: int = 0  # peak RSS above reading the reference alone (agent's encoder only)


@dataclass
class Curve:
    name: str
    points: list[Point] = field(default_factory=list)

    def bytes_at(self, ssim_db: float) -> float | None:
        return bytes_at([(p.quality.ssim_db, float(p.size)) for p in self.points], ssim_db)

    def near(self, ssim_db: float) -> Point:
        return min(self.points, key=lambda p: abs(p.quality.ssim_db - ssim_db))


@dataclass
class WorkloadResult:
    name: str
    seconds: float
    reference: Point  # the plain ffmpeg command at its CRF, from the reference
    ffmpeg_curve: Curve
    agent_curves: list[Curve]
    agent: Run | None = None
    ffmpeg: Run | None = None
    agent_av1: Run | None = None  # the agent at the av1 level (--av1)

    @property
    def shipped(self) -> Curve:
        return self.agent_curves[0]

    @property
    def av1(self) -> Curve | None:
        return next((c for c in self.agent_curves if c.name == AV1_VARIANT), None)

    def equal_ssim_ratio(self, curve: Curve) -> float | None:
        found = curve.bytes_at(self.reference.quality.ssim_db)
        return None if found is None else found / self.reference.size


# -- measuring one process ------------------------------------------------------------------


def measure(
    name: str, argv: list[str], env: dict[str, str], *, recorded_seconds: float,
    log: Path, interval: float, grace: float = 180.0,
) -> tuple[float, float, int, list[Sample]]:
    """Run `argv` to its end; return (wall s, CPU s, maxrss bytes, samples)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started = time.monotonic()
    samples: list[Sample] = []
    deadline = started + recorded_seconds + grace
    next_sample = started
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            break
        now = time.monotonic()
        if now > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            os.wait4(proc.pid, 0)
            proc.returncode = -signal.SIGKILL
            raise BenchError(f"{name} did not finish within {grace:.0f} s of its duration")
        if now >= next_sample:
            samples.append(sample(proc.pid, now - started))
            next_sample += interval
        time.sleep(min(0.1, max(0.0, next_sample - time.monotonic())))
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise BenchError(f"{name} exited with {proc.returncode}:\n{tail}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024, samples


def read_media(blobs: Iterator[bytes]) -> Media:
    """Count files, bytes, video packets and duration, demuxing only (no decoding)."""
    files = size = packets = 0
    seconds = 0.0
    for data in blobs:
        files += 1
        size += len(data)
        with av.open(io.BytesIO(data), mode="r") as container:
            stream = container.streams.video[0]
            first: int | None = None
            end = 0
            for packet in container.demux(stream):
                if packet.size == 0 or packet.pts is None:
                    continue
                packets += 1
                first = packet.pts if first is None else min(first, packet.pts)
                end = max(end, packet.pts + (packet.duration or 0))
            if first is not None and stream.time_base is not None:
                seconds += float((end - first) * stream.time_base)
    return Media(files, size, packets, seconds)


# -- settings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    minutes: float
    fps: float
    segment_seconds: float
    interval: float
    agent: list[str]
    workloads: tuple[str, ...]
    variants: tuple[str, ...]
    agent_only: bool
    curves: bool
    live: bool = True
    soak: bool = False  # --soak: the agent alone on the desktop, its RSS every --interval
    av1: bool = False  # --av1: the av1 level too (its curve and a live run)

    @property
    def seconds(self) -> float:
        return self.minutes * 60


def ffmpeg_argv(source: list[str], crf: int, out: Path) -> list[str]:
    """The plain command a user runs, reading `source` (x11grab, or the reference file)."""
    return [
        require_executable("ffmpeg"), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
        *source, "-c:v", "libx264", "-preset", REFERENCE_PRESET, "-crf", str(crf),
        "-pix_fmt", "yuv420p", str(out),
    ]


# -- step 1 and 2: the reference and the rate-quality curves ------------------------------


def capture_reference(name: str, settings: Settings, workdir: Path) -> Path:
    out = workdir / name / "reference.mkv"
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"bench: {name}: lossless reference, {settings.seconds:g} s…", file=sys.stderr)
    with screen(name, workdir) as display:
        argv = capture_reference_argv(display.display, WIDTH, HEIGHT, settings.fps,
                                      settings.seconds, out)
        done = subprocess.run(argv, env={**clean_env(), "DISPLAY": display.display},
                              capture_output=True, text=True, check=False,
                              timeout=settings.seconds + 120)
    if done.returncode != 0 or not out.is_file():
        raise BenchError(f"the reference capture failed: {done.stderr[-2000:]}")
    return out


def encode_with_agent(reference: Path, out: Path, crf: int, variant: str,
                      settings: Settings, *, decode_only: bool = False) -> dict[str, object]:
    if variant == AV1_VARIANT:
        codec = ["--codec", "av1"]
    else:
        tune, params, preset = VARIANTS[variant]
        codec = ["--tune", tune, "--x264-params", params, "--preset", preset]
    argv = [sys.executable, "-m", "tests.bench.encode_ref", str(reference), str(out),
            "--crf", str(crf), *codec,
            "--fps", f"{settings.fps:g}", "--segment-seconds", f"{settings.segment_seconds:g}"]
    if decode_only:
        argv.append("--decode-only")
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=3600,
                          env=clean_env())
    if done.returncode != 0:
        raise BenchError(f"encode_ref failed: {done.stderr[-2000:]}")
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def agent_curve(reference: Path, variant: str, settings: Settings, baseline_rss: int,
                crfs: tuple[int, ...]) -> Curve:
    curve = Curve(variant)
    for crf in crfs:
        out = reference.parent / f"agent-{variant}-crf{crf}"
        info = encode_with_agent(reference, out, crf, variant, settings)
        segments = info["segments"]
        if not isinstance(segments, list):
            raise BenchError("encode_ref printed no segment list")
        quality = compare([(out / name, float(seconds)) for name, seconds in segments],
                          reference, settings.fps)
        curve.points.append(Point(
            crf, int(str(info["bytes"])), quality, float(str(info["encode_cpu"])),
            max(0, int(str(info["maxrss"])) - baseline_rss),
        ))
        shutil.rmtree(out, ignore_errors=True)
    return curve


def ffmpeg_curve(reference: Path, settings: Settings, crfs: tuple[int, ...]) -> Curve:
    curve = Curve("ffmpeg")
    for crf in crfs:
        out = reference.parent / f"ffmpeg-crf{crf}.mp4"
        done = subprocess.run(ffmpeg_argv(["-i", str(reference)], crf, out),
                              capture_output=True, text=True, check=False, timeout=3600)
        if done.returncode != 0:
            raise BenchError(f"ffmpeg failed on the reference: {done.stderr[-2000:]}")
        curve.points.append(Point(crf, out.stat().st_size,
                                  compare([(out, None)], reference, settings.fps)))
        out.unlink()
    return curve


# -- step 3: the live recorders -------------------------------------------------------------


class AgentRecorder:
    name = "agent"
    quality: str | None = None  # the agent's --quality (None: its default)

    def __init__(self, settings: Settings, broker: BrokerProcess, s3: S3Endpoint,
                 workdir: Path) -> None:
        self.settings, self.broker, self.s3 = settings, broker, s3
        self.home = workdir / "agent-home"
        self.tenant = make_tenant(broker, s3)
        code = enrollment_code(broker, self.tenant, make_user(broker, self.tenant))
        result = subprocess.run(
            [*settings.agent, "enroll", "--broker", broker.url, "--code", code],
            env=self.env(""), capture_output=True, text=True, check=False, timeout=120,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            raise BenchError(f"agent enroll failed: {result.stderr.strip()}")

    def env(self, display: str) -> dict[str, str]:
        return {**clean_env(), "DISPLAY": display, "BUCKETREEL_AGENT_HOME": str(self.home),
                "BUCKETREEL_AGENT_LOG_FORMAT": "json"}  # read back as events below

    def argv(self, display: XDisplay, out: Path) -> list[str]:
        s = self.settings
        quality = [] if self.quality is None else ["--quality", self.quality]
        return [*s.agent, "run", "--fps", f"{s.fps:g}", "--segment-seconds",
                f"{s.segment_seconds:g}", "--duration", f"{s.seconds:g}", *quality]

    def at_quality(self, quality: str, name: str) -> AgentRecorder:
        """The same enrolled agent, recording at another quality level."""
        other = copy.copy(self)
        other.quality, other.name = quality, name
        return other

    @staticmethod
    def events(log: Path) -> dict[str, dict[str, object]]:
        found: dict[str, dict[str, object]] = {}
        for line in log.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get("event"), str):
                found[entry["event"]] = entry
        return found

    def collect(self, log: Path, out: Path) -> tuple[Media, list[tuple[Path, float | None]],
                                                     dict[str, float]]:
        events = self.events(log)
        started, finished = events.get("recording_started"), events.get("recording_finished")
        if started is None or finished is None:
            raise BenchError("the agent reported no recording_started/recording_finished")
        recording_id = str(started["recording_id"])
        token = json.loads((self.home / "device.json").read_text())["access_token"]
        info = Api(self.broker.url).call("GET", f"/api/v1/recordings/{recording_id}",
                                          token=token)
        if info.status != 200:
            raise BenchError(f"GET recording {recording_id}: {info.status} {info.body}")
        segments = info.body["segments"]
        states = {s["state"] for s in segments}
        if not segments or states != {"verified"}:
            raise BenchError(f"agent segments not all verified: {states or 'none'}")
        client = self.s3.client()
        parts: list[tuple[Path, float | None]] = []
        for segment in segments:
            path = out / f"{segment['seq']:05d}.mp4"
            body = client.get_object(Bucket=self.tenant.bucket, Key=segment["key"])["Body"]
            path.write_bytes(body.read())
            parts.append((path, segment["duration_ms"] / 1000))
        media = read_media(path.read_bytes() for path, _ in parts)
        stages = finished.get("cpu_seconds")
        cpu = {str(k): float(v) for k, v in stages.items()} if isinstance(stages, dict) else {}
        return media, parts, cpu


class FfmpegRecorder:
    name = "ffmpeg"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def env(self, display: str) -> dict[str, str]:
        return {**clean_env(), "DISPLAY": display}

    def argv(self, display: XDisplay, out: Path) -> list[str]:
        s = self.settings
        source = ["-f", "x11grab", "-draw_mouse", "0", "-framerate", f"{s.fps:g}",
                  "-video_size", f"{display.width}x{display.height}", "-i", display.display,
                  "-t", f"{s.seconds:g}"]
        return ffmpeg_argv(source, REFERENCE_CRF, out / "out.mp4")

    def collect(self, log: Path, out: Path) -> tuple[Media, list[tuple[Path, float | None]],
                                                     dict[str, float]]:
        path = out / "out.mp4"
        if not path.is_file():
            raise BenchError("ffmpeg wrote nothing")
        return read_media(iter([path.read_bytes()])), [(path, None)], {}


def live(recorder: AgentRecorder | FfmpegRecorder, name: str, settings: Settings,
         workdir: Path) -> Run:
    out = workdir / name / f"{recorder.name}-live"
    out.mkdir(parents=True)
    log = workdir / "logs" / f"{name}-{recorder.name}.log"
    print(f"bench: {name}: recording {settings.seconds:g} s with {recorder.name}…",
          file=sys.stderr)
    with screen(name, workdir) as display:
        wall, cpu, maxrss, samples = measure(
            recorder.name, recorder.argv(display, out), recorder.env(display.display),
            recorded_seconds=settings.seconds, log=log, interval=settings.interval,
        )
    media, _, stages = recorder.collect(log, out)
    shutil.rmtree(out, ignore_errors=True)
    return Run(recorder.name, settings.seconds, wall, cpu, maxrss, media, samples, stages)


# -- report ---------------------------------------------------------------------------------


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}×" if a is not None and b else "n/a"


def verdict(value: float | None, limit: float) -> str:
    if value is None or value != value:
        return "n/a"
    return "ok" if value <= limit else "MISSED"


def grid(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return ["  ".join(
        cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(r)
    ).rstrip() for r in [head, *rows]]


def curves_table(result: WorkloadResult, settings: Settings) -> list[str]:
    """The frontier: each agent setting's bytes at equal SSIM, its encoder CPU and memory."""
    target = result.reference.quality.ssim_db
    per_minute = 60 / result.seconds
    rows = []
    for curve in result.agent_curves:
        near = curve.near(target)
        rows.append((
            curve.name, ratio(curve.bytes_at(target), result.reference.size),
            f"{near.encode_cpu * per_minute:.2f}", f"{near.encoder_rss / MB:.0f}",
            "  ".join(f"{p.crf}:{p.size / 1000:.0f}k/{p.quality.ssim_db:.2f}"
                      for p in curve.points),
        ))
    ff = "  ".join(f"{p.crf}:{p.size / 1000:.0f}k/{p.quality.ssim_db:.2f}"
                   for p in result.ffmpeg_curve.points)
    rows.append(("ffmpeg (plain)", "1.00×", "", "", ff))
    return grid(("encoder settings", "bytes @ equal SSIM", "encode CPU s/min",
                 "encoder MB", "CRF:bytes/SSIM-Y dB"), rows)


def stages_table(agent: Run) -> list[str]:
    if not agent.stages:
        return []
    total = agent.stages.get("total") or 1.0
    per_minute = 60 / agent.recorded_seconds
    rows = [(stage, f"{seconds * per_minute:.3f}", f"{seconds / total:.0%}")
            for stage, seconds in agent.stages.items() if stage != "total"]
    rows.append(("total (process)", f"{total * per_minute:.3f}", "100%"))
    return grid(("agent CPU by stage", "s / recorded min", "share"), rows)


def av1_table(result: WorkloadResult, curve: Curve) -> list[str]:
    """The av1 level (AV1) against the plain command, as the main table."""
    hour = 3600 / result.seconds
    at_ssim = curve.bytes_at(result.reference.quality.ssim_db)
    ratio_bytes = result.equal_ssim_ratio(curve)
    crf = QUALITY["av1"].crf
    at_crf = next((p for p in curve.points if p.crf == crf), curve.points[0])
    rows: list[tuple[str, ...]] = [
        ("MB / recorded hour at equal SSIM-Y",
         "n/a" if at_ssim is None else f"{at_ssim * hour / MB:.1f}",
         f"{result.reference.size * hour / MB:.1f}", ratio(at_ssim, result.reference.size),
         f"≤ {TARGET_AV1_BYTES:.1f}× office {verdict(ratio_bytes, TARGET_AV1_BYTES)}"),
        (f"  at its CRF {at_crf.crf}: MB/h, SSIM-Y dB",
         f"{at_crf.size * hour / MB:.1f}, {at_crf.quality.ssim_db:.2f}",
         f"{result.reference.size * hour / MB:.1f}, {result.reference.quality.ssim_db:.2f}",
         ratio(at_crf.size, result.reference.size), ""),
    ]
    mine, theirs = result.agent_av1, result.ffmpeg
    if mine is not None:
        figures: list[tuple[str, Callable[[Run], float], str]] = [
            ("live: MB / recorded hour", lambda r: r.bytes_per_hour / MB, ".1f"),
            ("live: CPU s / recorded min", lambda r: r.cpu_per_minute, ".2f"),
            ("live:   steady (after warm-up)", lambda r: r.steady_cpu_per_minute, ".2f"),
            ("live: peak RSS (MB)", lambda r: r.peak_rss / MB, ".0f"),
            ("live: steady RSS (MB)", lambda r: r.steady_rss / MB, ".0f"),
        ]
        for label, figure, fmt in figures:
            other = None if theirs is None else figure(theirs)
            rows.append((label, format(figure(mine), fmt),
                         "—" if other is None else format(other, fmt),
                         "" if other is None else ratio(figure(mine), other), ""))
    return grid(("av1 (SVT-AV1)", "agent AV1", "ffmpeg", "AV1/ffmpeg", "target"), rows)


def table(result: WorkloadResult, settings: Settings) -> str:
    name, agent, ffmpeg = result.name, result.agent, result.ffmpeg
    lines = [f"== {name}: {DESCRIPTIONS[name]}; {WIDTH}x{HEIGHT}, {settings.fps:g} fps, "
             f"{result.seconds:g} s; reference: ffmpeg -preset {REFERENCE_PRESET} "
             f"-crf {REFERENCE_CRF}, SSIM-Y {result.reference.quality.ssim_db:.2f} dB "
             f"({result.reference.quality.ssim_y:.5f}), PSNR-Y "
             f"{result.reference.quality.psnr_y:.2f} dB"]
    hour = 3600 / result.seconds
    shipped = result.shipped.bytes_at(result.reference.quality.ssim_db)
    rows: list[tuple[str, ...]] = []
    bytes_ratio = result.equal_ssim_ratio(result.shipped)
    rows.append((
        "MB / recorded hour at equal SSIM-Y",
        "n/a" if shipped is None else f"{shipped * hour / MB:.1f}",
        f"{result.reference.size * hour / MB:.1f}", ratio(shipped, result.reference.size),
        f"≤ {TARGET_BYTES[name]:.1f}× {verdict(bytes_ratio, TARGET_BYTES[name])}",
    ))
    near = result.shipped.near(result.reference.quality.ssim_db)
    at_default = next((p for p in result.shipped.points if p.crf == DEFAULT_CRF), near)
    rows.append((
        f"  at the agent's CRF {at_default.crf}: MB/h, SSIM-Y dB",
        f"{at_default.size * hour / MB:.1f}, {at_default.quality.ssim_db:.2f}",
        f"{result.reference.size * hour / MB:.1f}, {result.reference.quality.ssim_db:.2f}",
        ratio(at_default.size, result.reference.size), "",
    ))
    if agent is not None:
        def pair(figure: Callable[[Run], float], fmt: str) -> tuple[str, str, str]:
            mine = figure(agent)
            theirs = None if ffmpeg is None else figure(ffmpeg)
            return (format(mine, fmt), "—" if theirs is None else format(theirs, fmt),
                    "" if theirs is None else ratio(mine, theirs))

        steady_ratio = (None if ffmpeg is None
                        else agent.steady_cpu_per_minute / ffmpeg.steady_cpu_per_minute)
        rows += [
            ("live: MB / recorded hour", *pair(lambda r: r.bytes_per_hour / MB, ".1f"), ""),
            ("live: CPU s / recorded min", *pair(lambda r: r.cpu_per_minute, ".2f"), ""),
            ("live:   steady (after warm-up)", *pair(lambda r: r.steady_cpu_per_minute, ".2f"),
             f"≤ {TARGET_STEADY_CPU[name]:.1f}× "
             f"{verdict(steady_ratio, TARGET_STEADY_CPU[name])}"),
            ("live: peak RSS (MB)", *pair(lambda r: r.peak_rss / MB, ".0f"), ""),
            ("live: steady RSS (MB)", *pair(lambda r: r.steady_rss / MB, ".0f"),
             f"≤ {TARGET_STEADY_RSS / MB:.0f} MB "
             f"{verdict(agent.steady_rss, TARGET_STEADY_RSS)}"),
        ]
        soak = settings.minutes >= 30 or settings.soak
        growth = (verdict(agent.rss_growth, TARGET_RSS_GROWTH) if soak
                  else "(30-min soak only)")
        rows.append(("live: RSS growth", f"{agent.rss_growth:+.1%}",
                     "—" if ffmpeg is None else f"{ffmpeg.rss_growth:+.1%}", "",
                     f"< {TARGET_RSS_GROWTH:.0%} {growth}"))
        rows.append(("live: files / frames", f"{agent.media.files} / {agent.media.packets}",
                     "—" if ffmpeg is None else f"{ffmpeg.media.files} / {ffmpeg.media.packets}",
                     "", ""))
    lines += grid(("", "agent", "ffmpeg", "agent/ffmpeg", "target"), rows)
    if result.av1 is not None:
        lines += ["", *av1_table(result, result.av1)]
    if settings.curves:
        lines += ["", *curves_table(result, settings)]
    if agent is not None and agent.stages:
        lines += ["", *stages_table(agent)]
    return "\n".join(lines)


def soak_table(run: Run, settings: Settings) -> str:
    """The soak: the agent's RSS as sampled, its steady median and growth, five-minute medians."""
    growth = run.rss_growth
    lines = [
        f"== soak: the agent alone on the {DESCRIPTIONS['desktop']}; {WIDTH}x{HEIGHT}, "
        f"{settings.fps:g} fps, {run.recorded_seconds:g} s, RSS every {settings.interval:g} s",
        f"steady RSS {run.steady_rss / MB:.1f} MB (median after {run.warmup:g} s), peak "
        f"{run.peak_rss / MB:.1f} MB, RSS growth {growth:+.1%} (last fifth against the first "
        f"fifth after warm-up; target < {TARGET_RSS_GROWTH:.0%}: "
        f"{verdict(growth, TARGET_RSS_GROWTH)})",
        f"CPU {run.cpu_per_minute:.2f} s / recorded min, steady "
        f"{run.steady_cpu_per_minute:.2f}; {run.media.files} files, {run.media.packets} frames, "
        f"{run.bytes_per_hour / MB:.1f} MB / recorded hour",
    ]
    buckets: dict[int, list[int]] = {}
    for s in run.samples:
        buckets.setdefault(int(s.at // 300), []).append(s.rss)
    lines.append("median RSS per 5 minutes (MB): " + "  ".join(
        f"{k * 5}-{k * 5 + 5}: {statistics.median(v) / MB:.1f}" for k, v in sorted(buckets.items())
    ))
    lines.append("RSS samples (s: MB): " + "  ".join(
        f"{s.at:.0f}: {s.rss / MB:.1f}" for s in run.samples))
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench.sh", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--minutes", type=float, default=2.0,
                        help="recorded minutes per workload and recorder (default 2; 30 for "
                        "the soak)")
    parser.add_argument("--fps", type=float, default=1.0, help="frames per second (default 1)")
    parser.add_argument("--segment-seconds", type=float, default=60.0,
                        help="the agent's segment length (default 60)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help=f"comma-separated, of {', '.join(WORKLOADS)} (default: all)")
    parser.add_argument("--variants", default="shipped",
                        help="agent encoder settings to draw curves for, comma-separated, of "
                        f"{', '.join(VARIANTS)} (default: shipped, the agent's own)")
    parser.add_argument("--no-curves", action="store_true",
                        help="skip the rate-quality curves (live figures only, no equal SSIM)")
    parser.add_argument("--agent", type=Path, default=None,
                        help="agent program to run (default: the venv's bucketreel-agent; "
                        "give build/dist/bucketreel-agent to measure the frozen binary)")
    parser.add_argument("--interval", type=float, default=1.0,
                        help="seconds between /proc samples (default 1)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--no-live", action="store_true",
                        help="the reference and the rate-quality curves only, no live runs")
    parser.add_argument("--av1", action="store_true",
                        help="also the av1 level (AV1): its rate-quality curve, and "
                        "a live run of the agent at --quality av1")
    parser.add_argument("--agent-only", action="store_true",
                        help="live: the agent alone (a soak: its RSS growth), no ffmpeg")
    parser.add_argument("--soak", type=float, metavar="SECONDS", default=None,
                        help="the soak instead: the real agent alone records the desktop "
                        "workload for SECONDS (e.g. 1800), its RSS sampled every 30 s "
                        "(--interval), no reference, no curves, no ffmpeg")
    return parser.parse_args(argv)


def run_workload(name: str, settings: Settings, workdir: Path,
                 agent_recorder: AgentRecorder | None) -> WorkloadResult:
    reference = capture_reference(name, settings, workdir)
    if settings.curves:
        print(f"bench: {name}: rate-quality curves…", file=sys.stderr)
        baseline = int(str(encode_with_agent(reference, workdir / name / "decode-only", 0,
                                             "shipped", settings, decode_only=True)["maxrss"]))
        ff = ffmpeg_curve(reference, settings, FFMPEG_CRFS)
        curves = [agent_curve(reference, variant, settings, baseline, AGENT_CRFS)
                  for variant in settings.variants]
        if settings.av1:
            curves.append(agent_curve(reference, AV1_VARIANT, settings, baseline, AV1_CRFS))
    else:
        ff = ffmpeg_curve(reference, settings, (REFERENCE_CRF,))
        curves = [agent_curve(reference, "shipped", settings, 0, (DEFAULT_CRF,))]
        if settings.av1:
            curves.append(agent_curve(reference, AV1_VARIANT, settings, 0,
                                      (QUALITY["av1"].crf,)))
    ref_point = next(p for p in ff.points if p.crf == REFERENCE_CRF)
    result = WorkloadResult(name, settings.seconds, ref_point, ff, curves)
    if agent_recorder is not None:
        result.agent = live(agent_recorder, name, settings, workdir)
        if settings.av1:
            result.agent_av1 = live(agent_recorder.at_quality("av1", "agent-av1"),
                                    name, settings, workdir)
        if not settings.agent_only:
            result.ffmpeg = live(FfmpegRecorder(settings), name, settings, workdir)
    reference.unlink()
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.soak is not None:
        if args.soak <= 0:
            print("bench: --soak takes a positive number of seconds", file=sys.stderr)
            return 2
        args.minutes, args.workloads, args.agent_only = args.soak / 60, "desktop", True
        args.interval = 30.0 if args.interval == 1.0 else args.interval
    if args.minutes <= 0 or args.fps <= 0:
        print("bench: --minutes and --fps must be positive", file=sys.stderr)
        return 2
    workloads = tuple(w for w in args.workloads.split(",") if w)
    variants = ("shipped", *(v for v in args.variants.split(",") if v and v != "shipped"))
    unknown = [w for w in workloads if w not in WORKLOADS] + [
        v for v in variants if v not in VARIANTS]
    if unknown or not workloads:
        print(f"bench: unknown workload or variant: {', '.join(unknown) or '(none given)'}",
              file=sys.stderr)
        return 2
    agent = args.agent or Path(sys.executable).with_name("bucketreel-agent")
    settings = Settings(args.minutes, args.fps, args.segment_seconds, args.interval,
                        [str(agent)], workloads, variants, args.agent_only, not args.no_curves,
                        not args.no_live, soak=args.soak is not None, av1=args.av1)
    workdir = Path(tempfile.mkdtemp(prefix="bucketreel-bench-"))
    results: list[WorkloadResult] = []
    soaked: Run | None = None
    try:
        require_executable("Xvfb")
        require_executable("ffmpeg")
        if not agent.is_file():
            raise MissingDependencyError(f"{agent} not found: run scripts/install.sh")
        with ExitStack() as stack:
            s3 = stack.enter_context(run_moto(log_dir=workdir / "logs"))
            database = workdir / "broker.db"
            broker = stack.enter_context(
                BrokerProcess(f"sqlite+aiosqlite:///{database}", log_dir=workdir / "logs")
            )
            recorder = AgentRecorder(settings, broker, s3, workdir) if settings.live else None
            if settings.soak and recorder is not None:
                soaked = live(recorder, "desktop", settings, workdir)
                workloads = ()
            for name in workloads:
                results.append(run_workload(name, settings, workdir, recorder))
                print(table(results[-1], settings), file=sys.stderr)
    except (BenchError, MissingDependencyError, ProcessStartError, BrokerCommandError,
            RuntimeError) as err:
        print(f"bench: error: {err}", file=sys.stderr)
        print(f"bench: logs kept in {workdir / 'logs'}", file=sys.stderr)
        return 1
    print(f"bucketreel-agent vs the plain ffmpeg command, {os.cpu_count()} CPUs, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    if soaked is not None:
        print(soak_table(soaked, settings))
        if args.json:
            args.json.write_text(json.dumps({"soak": soaked.summary()}, indent=2) + "\n")
    for result in results:
        print()
        print(table(result, settings))
    if args.json and soaked is None:
        args.json.write_text(json.dumps([{
            "workload": r.name, "seconds": r.seconds,
            "reference": asdict(r.reference), "ffmpeg_curve": asdict(r.ffmpeg_curve),
            "agent_curves": [asdict(c) for c in r.agent_curves],
            "agent": r.agent.summary() if r.agent else None,
            "agent_av1": r.agent_av1.summary() if r.agent_av1 else None,
            "ffmpeg": r.ffmpeg.summary() if r.ffmpeg else None,
        } for r in results], indent=2) + "\n")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
