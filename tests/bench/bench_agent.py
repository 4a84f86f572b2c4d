"""Benchmark: the agent against `ffmpeg -f x11grab … -c:v libx264` on a scripted desktop.

    bash scripts/bench.sh [--minutes 2] [--fps 1] [--agent PATH] [--json FILE] [--agent-only]

Not part of the test suite (pytest never collects this file: it is not named test_*.py).

What it does, all on this machine with real parts:
  1. starts moto's S3 server and a broker on SQLite (tests/support/), makes a tenant with a
     bucket and an employee, and enrolls the agent with a one-time code;
  2. for each recorder in turn (the agent first, then ffmpeg): starts a fresh Xvfb at
     1920x1080, plays the scripted office workload (workload.py, timed from its own start,
     so both recorders see the same picture at the same offset), records for `--minutes`,
     sampling the recorder's CPU time and RSS from /proc once a second;
  3. reads back what each produced (the agent's segments from the bucket, verified by the
     broker; ffmpeg's segment files) and prints a table of figures and ratios.

The recorders run one after the other, not at once, so that neither competes with the other
for this machine's two cores; the workload itself and Xvfb run in both cases and are not
counted. ffmpeg gets the agent's own preset and CRF, the same fps, the same segment length
with a keyframe at each segment start, yuv420p (what browsers play; ffmpeg would otherwise
pick 4:4:4 for x11grab's RGB input) and no cursor (mss does not capture it).

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
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import av

from agent.encode import DEFAULT_CRF, DEFAULT_PRESET, DEFAULT_TUNE
from tests.bench.procstat import Sample, sample
from tests.support.api import Api, enrollment_code, make_tenant, make_user
from tests.support.broker import BrokerCommandError, BrokerProcess
from tests.support.display import XDisplay, run_xvfb
from tests.support.procs import (
    ManagedProcess,
    MissingDependencyError,
    ProcessStartError,
    require_executable,
)
from tests.support.s3 import S3Endpoint, run_moto

WORKLOAD = Path(__file__).with_name("workload.py")
WIDTH, HEIGHT = 1920, 1080
MB = 1_000_000

TARGET_CPU_RATIO = 1.0
TARGET_BYTES_RATIO = 1.0
TARGET_STEADY_RSS = 150 * MB
TARGET_RSS_GROWTH = 0.05


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
            **{f"media_{k}": v for k, v in asdict(self.media).items()},
            "samples": [[round(s.at, 2), round(s.cpu, 2), s.rss] for s in self.samples],
        }


# -- measuring one recorder ------------------------------------------------------------------


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


# -- the two recorders ----------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    minutes: float
    fps: float
    segment_seconds: float
    crf: int
    preset: str
    interval: float
    agent: list[str]

    @property
    def seconds(self) -> float:
        return self.minutes * 60


class AgentRecorder:
    name = "agent"

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
                "BUCKETREEL_AGENT_LOG_FORMAT": "text"}  # read back as lines below

    def argv(self, display: XDisplay, out: Path) -> list[str]:
        s = self.settings
        return [*s.agent, "run", "--fps", f"{s.fps:g}", "--segment-seconds",
                f"{s.segment_seconds:g}", "--duration", f"{s.seconds:g}", "--crf", str(s.crf)]

    def media(self, log: Path, out: Path) -> Media:
        lines = log.read_text(errors="replace").splitlines()
        recording_id = next(
            (line.split()[1] for line in lines if line.startswith("recording ")), None
        )
        if recording_id is None:
            raise BenchError("the agent printed no 'recording <id>' line")
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
        return read_media(
            client.get_object(Bucket=self.tenant.bucket, Key=s["key"])["Body"].read()
            for s in segments
        )


class FfmpegRecorder:
    name = "ffmpeg"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ffmpeg = require_executable("ffmpeg")

    def env(self, display: str) -> dict[str, str]:
        return {**clean_env(), "DISPLAY": display}

    def argv(self, display: XDisplay, out: Path) -> list[str]:
        s = self.settings
        segment = f"{s.segment_seconds:g}"
        return [
            self.ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin",
            "-f", "x11grab", "-draw_mouse", "0", "-framerate", f"{s.fps:g}",
            "-video_size", f"{display.width}x{display.height}", "-i", display.display,
            "-t", f"{s.seconds:g}",
            "-c:v", "libx264", "-preset", s.preset, "-crf", str(s.crf), "-pix_fmt", "yuv420p",
            "-force_key_frames", f"expr:gte(t,n_forced*{segment})",
            "-f", "segment", "-segment_time", segment, "-reset_timestamps", "1",
            "-segment_format", "mp4", "-segment_format_options", "movflags=+faststart",
            str(out / "%05d.mp4"),
        ]

    def media(self, log: Path, out: Path) -> Media:
        files = sorted(out.glob("*.mp4"))
        if not files:
            raise BenchError("ffmpeg wrote no segment")
        return read_media(f.read_bytes() for f in files)


def clean_env() -> dict[str, str]:
    """This environment without display, AWS or bucketreel settings from outside."""
    return {
        k: v for k, v in os.environ.items()
        if k not in {"DISPLAY", "WAYLAND_DISPLAY", "XAUTHORITY"}
        and not k.startswith(("BUCKETREEL_", "AWS_"))
    } | {"AWS_EC2_METADATA_DISABLED": "true"}


@contextmanager
def desktop(workdir: Path, seed: int) -> Iterator[XDisplay]:
    """A fresh 1920x1080 Xvfb with the workload playing on it."""
    with ExitStack() as stack:
        display = stack.enter_context(
            run_xvfb(WIDTH, HEIGHT, animate=False, log_dir=workdir / "logs")
        )
        workload = ManagedProcess(
            "workload", [sys.executable, str(WORKLOAD), "--display", display.display,
                         "--seed", str(seed)],
            env={**clean_env(), "DISPLAY": display.display}, log_dir=workdir / "logs",
            stop_timeout=5.0,
        )
        stack.enter_context(workload)
        workload.wait_ready(lambda: "workload ready" in workload.log_text(), timeout=30)
        yield display


def bench(recorder: AgentRecorder | FfmpegRecorder, settings: Settings, workdir: Path,
          seed: int) -> Run:
    out = workdir / f"{recorder.name}-out"
    out.mkdir()
    log = workdir / "logs" / f"{recorder.name}.log"
    print(f"bench: recording {settings.minutes:g} min with {recorder.name}…", file=sys.stderr)
    with desktop(workdir, seed) as display:
        wall, cpu, maxrss, samples = measure(
            recorder.name, recorder.argv(display, out), recorder.env(display.display),
            recorded_seconds=settings.seconds, log=log, interval=settings.interval,
        )
    media = recorder.media(log, out)
    return Run(recorder.name, settings.seconds, wall, cpu, maxrss, media, samples)


# -- report ---------------------------------------------------------------------------------


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b else "n/a"


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def table(agent: Run, ffmpeg: Run | None, settings: Settings) -> str:
    """The figures, ffmpeg's and the ratios left blank when it did not run (--agent-only)."""
    rows: list[tuple[str, str, str, str, str]] = []

    def row(label: str, a: str, f: str, r: str = "", target: str = "") -> None:
        rows.append((label, a, f, r, target))

    def both(figure: Callable[[Run], float], fmt: str, target: float | None = None,
             target_text: str = "") -> tuple[str, str, str, str]:
        mine = figure(agent)
        theirs = figure(ffmpeg) if ffmpeg is not None else None
        check = ""
        if target is not None and theirs is not None:
            check = f"{target_text} {verdict(mine / theirs <= target)}"
        return (format(mine, fmt), "—" if theirs is None else format(theirs, fmt),
                "" if theirs is None else ratio(mine, theirs), check)

    row("CPU s / recorded min", *both(lambda r: r.cpu_per_minute, ".2f", TARGET_CPU_RATIO,
                                      f"≤ {TARGET_CPU_RATIO:.1f}×"))
    row("  steady (after warm-up)", *both(lambda r: r.steady_cpu_per_minute, ".2f"))
    row("MB / recorded hour", *both(lambda r: r.bytes_per_hour / MB, ".1f", TARGET_BYTES_RATIO,
                                    f"≤ {TARGET_BYTES_RATIO:.1f}×"))
    row("peak RSS (MB)", *both(lambda r: r.peak_rss / MB, ".0f"))
    row("steady RSS (MB)", *both(lambda r: r.steady_rss / MB, ".0f")[:3],
        f"≤ {TARGET_STEADY_RSS / MB:.0f} MB {verdict(agent.steady_rss <= TARGET_STEADY_RSS)}")
    soak = settings.minutes >= 30
    growth_target = f"< {TARGET_RSS_GROWTH:.0%} " + (
        verdict(agent.rss_growth < TARGET_RSS_GROWTH) if soak else "(30-min soak only)"
    )
    row("RSS growth", f"{agent.rss_growth:+.1%}",
        "—" if ffmpeg is None else f"{ffmpeg.rss_growth:+.1%}", "", growth_target)
    row("segments / frames", f"{agent.media.files} / {agent.media.packets}",
        "—" if ffmpeg is None else f"{ffmpeg.media.files} / {ffmpeg.media.packets}")
    row("media seconds read back", f"{agent.media.seconds:.1f}",
        "—" if ffmpeg is None else f"{ffmpeg.media.seconds:.1f}")
    row("wall s / CPU s total", f"{agent.wall_seconds:.0f} / {agent.cpu_total:.1f}",
        "—" if ffmpeg is None else f"{ffmpeg.wall_seconds:.0f} / {ffmpeg.cpu_total:.1f}")

    head = ("", "agent", "ffmpeg", "agent/ffmpeg", "target")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(5)]
    runs = "each, run one after the other" if ffmpeg is not None else "(agent only)"
    lines = [
        f"bucketreel-agent vs ffmpeg x11grab: {WIDTH}x{HEIGHT} Xvfb, {settings.fps:g} fps, "
        f"{settings.segment_seconds:g} s segments, libx264 preset {settings.preset} "
        f"CRF {settings.crf} (agent tune {DEFAULT_TUNE or 'none'}, ffmpeg default tune), "
        f"{settings.minutes:g} min scripted workload {runs}, {os.cpu_count()} CPUs",
    ]
    for r in [head, *rows]:
        lines.append("  ".join(
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(r)
        ).rstrip())
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench.sh", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--minutes", type=float, default=2.0,
                        help="recorded minutes per recorder (default 2; 30 for the soak)")
    parser.add_argument("--fps", type=float, default=1.0, help="frames per second (default 1)")
    parser.add_argument("--segment-seconds", type=float, default=60.0,
                        help="segment length for both (default 60)")
    parser.add_argument("--crf", type=int, default=DEFAULT_CRF,
                        help=f"CRF for both (default: the agent's, {DEFAULT_CRF})")
    parser.add_argument("--agent", type=Path, default=None,
                        help="agent program to run (default: the venv's bucketreel-agent; "
                        "give build/dist/bucketreel-agent to measure the frozen binary)")
    parser.add_argument("--interval", type=float, default=1.0,
                        help="seconds between /proc samples (default 1)")
    parser.add_argument("--seed", type=int, default=1, help="workload seed (default 1)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--agent-only", action="store_true",
                        help="record with the agent alone (a soak: its RSS growth), no ffmpeg")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.minutes <= 0 or args.fps <= 0:
        print("bench: --minutes and --fps must be positive", file=sys.stderr)
        return 2
    agent = args.agent or Path(sys.executable).with_name("bucketreel-agent")
    settings = Settings(args.minutes, args.fps, args.segment_seconds, args.crf, DEFAULT_PRESET,
                        args.interval, [str(agent)])
    workdir = Path(tempfile.mkdtemp(prefix="bucketreel-bench-"))
    try:
        require_executable("Xvfb")
        ffmpeg_recorder = FfmpegRecorder(settings)
        if not agent.is_file():
            raise MissingDependencyError(f"{agent} not found: run scripts/install.sh")
        with ExitStack() as stack:
            s3 = stack.enter_context(run_moto(log_dir=workdir / "logs"))
            database = workdir / "broker.db"
            broker = stack.enter_context(
                BrokerProcess(f"sqlite+aiosqlite:///{database}", log_dir=workdir / "logs")
            )
            agent_recorder = AgentRecorder(settings, broker, s3, workdir)
            agent_run = bench(agent_recorder, settings, workdir, args.seed)
        ffmpeg_run = (
            None if args.agent_only else bench(ffmpeg_recorder, settings, workdir, args.seed)
        )
    except (BenchError, MissingDependencyError, ProcessStartError, BrokerCommandError) as err:
        print(f"bench: error: {err}", file=sys.stderr)
        print(f"bench: logs kept in {workdir / 'logs'}", file=sys.stderr)
        return 1
    print(table(agent_run, ffmpeg_run, settings))
    if args.json:
        args.json.write_text(json.dumps(
            {"agent": agent_run.summary(),
             "ffmpeg": ffmpeg_run.summary() if ffmpeg_run is not None else None}, indent=2
        ) + "\n")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
