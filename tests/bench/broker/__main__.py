"""The broker's device path under an open-loop load, beside a minimal anchor service.

    python -m tests.bench.broker            # 10,000 devices, PostgreSQL then SQLite, anchor
    python -m tests.bench.broker --help     # every option

Starts its own PostgreSQL (with pg_stat_statements), moto and broker processes through the
suite's support code (tests/support/), enrolls the devices (`tests.bench.broker.fleet`),
drives the device mix at stepped rates (`tests.bench.broker.load`) and prints per step and
route the client and server p50/p95/p99, achieved against offered rate, errors, the broker's
CPU per request and PostgreSQL's transactions, statements and lock waits per request; then
the same for the anchor (`tests.bench.broker.anchor`) on the same PostgreSQL, and the ratio.
The last line: the PostgreSQL mixed rate sustained, its p99 and the anchor ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from tests.bench.broker import fleet as fleets
from tests.bench.broker import profile as profiling
from tests.bench.broker.anchor import KEY_VAR, TIMING_HEADER, token
from tests.bench.broker.load import (
    ANCHOR,
    MIX,
    ROUTES,
    DeviceMix,
    Result,
    Send,
    open_loop,
    timed_post,
)
from tests.bench.broker.measure import AccessLog, PgCounters, PgWatch, cpu_seconds, percentile
from tests.support.broker import BrokerProcess, base_env
from tests.support.postgres import PostgresServer, run_postgres
from tests.support.procs import ManagedProcess, free_port, http_probe
from tests.support.s3 import S3Endpoint, run_moto

ROLE = "bucketreel_bench"
SUSTAINED = 0.95  # a step is sustained when this share of the offered rate was achieved
TARGETS = {"postgresql": (512, 50.0), "sqlite": (150, 100.0)}  # req/s, p99 ms (issue 14)
WARMUP = (50.0, 2.0)  # req/s, seconds: pools, caches and code paths warm, not reported
OK_STATUSES = (200, 201)


@dataclass(slots=True)
class Step:
    target: str
    offered: float
    seconds: float
    elapsed: float
    results: list[Result]
    server: dict[str, list[float]]
    cpu_ms: float
    pg: PgCounters | None
    late_ms: float

    @property
    def ok(self) -> int:
        return sum(1 for r in self.results if r.status in OK_STATUSES)

    @property
    def limited(self) -> int:
        return sum(1 for r in self.results if r.status == 429)

    @property
    def errors(self) -> int:
        return len(self.results) - self.ok - self.limited

    @property
    def achieved(self) -> float:
        return (self.ok + self.limited) / self.elapsed if self.elapsed else 0.0

    @property
    def sustained(self) -> bool:
        return self.errors == 0 and self.achieved >= SUSTAINED * self.offered

    def p99(self) -> float:
        return percentile([r.client_ms for r in self.results], 99) or 0.0


@dataclass(slots=True)
class Target:
    name: str
    description: str
    steps: list[Step] = field(default_factory=list)
    profile: tuple[float, list[str]] | None = None  # the step's rate, py-spy's summary

    def best(self) -> Step | None:
        sustained = [s for s in self.steps if s.sustained]
        return max(sustained, key=lambda s: s.offered) if sustained else None


def _rates(text: str) -> list[float]:
    return [rate for x in text.split(",") if x.strip() and (rate := float(x)) > 0]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bash scripts/bench_broker.sh",
        description="Benchmark the broker's device path (upload grant, completion, heartbeat, "
        "token refresh) open-loop at stepped rates, beside a minimal anchor service.",
    )
    parser.add_argument("--devices", type=int, default=10_000, help="enrolled devices")
    parser.add_argument("--tenants", type=int, default=1, help="tenants they are spread over")
    parser.add_argument("--backends", default="postgresql,sqlite",
                        help="comma-separated: postgresql, sqlite (default both)")
    parser.add_argument("--pg-rates", default="128,256,384,512,640",
                        help="offered req/s per PostgreSQL step")
    parser.add_argument("--sqlite-rates", default="50,100,150,200",
                        help="offered req/s per SQLite step")
    parser.add_argument("--anchor-rates", default="256,512,768,1024",
                        help="offered req/s per anchor step (0: no anchor)")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each step")
    parser.add_argument("--keep-going", action="store_true",
                        help="run every step even after one was not sustained")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="sample each target with py-spy during one step, keep the stacks "
                        "in DIR and print the busiest functions (needs py-spy in the venv)")
    parser.add_argument("--profile-rate", type=float, default=None,
                        help="the step to profile (default: each target's first)")
    parser.add_argument("--log-dir", type=Path, default=None,
                        help="keep the servers' logs here (default: a temporary directory)")
    args = parser.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if args.profile is not None:
        profiling.py_spy()  # fails now, saying what is missing, rather than after the setup
    for backend in args.backends:
        if backend not in TARGETS:
            parser.error(f"unknown backend {backend!r}: use postgresql and/or sqlite")
    if args.devices < 1 or args.tenants < 1 or args.tenants > args.devices:
        parser.error("--devices and --tenants must be positive, with no more tenants than devices")
    return args


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256, force_close=False))


async def _steps(
    target: Target, rates: list[float], args: argparse.Namespace, pid: int,
    send: Send, log: AccessLog | None, pg: PgWatch | None,
) -> None:
    seconds = args.seconds
    await open_loop(WARMUP[0], WARMUP[1], send)  # not reported
    for rate in rates:
        if log is not None:
            log.skip()
        if pg is not None:
            await pg.begin()
        sampler = None
        if args.profile is not None and rate == (args.profile_rate or rates[0]):
            args.profile.mkdir(parents=True, exist_ok=True)
            out = args.profile / f"{target.name}-{rate:g}.txt"
            sampler = (profiling.record(pid, seconds, out), out)
        cpu = cpu_seconds(pid)
        run = await open_loop(rate, seconds, send)
        cpu = cpu_seconds(pid) - cpu
        if sampler is not None:
            await asyncio.to_thread(sampler[0].wait, 30)
            target.profile = (rate, profiling.summarize(sampler[1]))
        counters = await pg.end() if pg is not None else None
        server = log.server_ms() if log is not None else {}
        if not server:
            for r in run.results:
                if r.server_ms is not None:
                    server.setdefault(r.route, []).append(r.server_ms)
        step = Step(target.name, rate, seconds, run.elapsed, run.results, server,
                    cpu * 1000 / max(1, len(run.results)), counters, run.late_ms)
        target.steps.append(step)
        print_step(target, step)
        if not step.sustained and not args.keep_going:
            print(f"  ({target.name}: {rate:g}/s not sustained; higher steps skipped)")
            break


def _planned_grants(rates: list[float], seconds: float) -> int:
    requests = WARMUP[0] * WARMUP[1] + sum(rates) * seconds
    return int(requests * MIX.count("grant") / len(MIX) * 1.05) + 10


async def _drive_broker(
    target: Target, broker: BrokerProcess, fleet: fleets.Fleet, args: argparse.Namespace,
    rates: list[float], pg: PgWatch | None,
) -> None:
    log = AccessLog(broker.log_path)
    if pg is not None:
        await pg.open()
    try:
        async with _session() as session:
            mix = DeviceMix(fleet, broker.url, session)
            await _steps(target, rates, args, broker.pid, mix.send, log, pg)
    finally:
        if pg is not None:
            await pg.close()


def run_backend(
    backend: str, args: argparse.Namespace, s3: S3Endpoint, pg: PostgresServer | None,
    log_dir: Path,
) -> Target:
    rates = _rates(args.pg_rates if backend == "postgresql" else args.sqlite_rates)
    if backend == "postgresql":
        assert pg is not None
        database = f"bench_{secrets.token_hex(3)}"
        url = pg.create_database(database, owner=ROLE)
    else:
        url = f"sqlite+aiosqlite:///{tempfile.mkdtemp(prefix='bench-sqlite-', dir=log_dir)}/b.db"
    with BrokerProcess(url, log_dir=log_dir) as broker:
        started = time.monotonic()
        fleet = fleets.build(broker, s3, args.devices, args.tenants)
        enrolled = time.monotonic() - started
        objects = fleets.upload_objects(fleet, s3, _planned_grants(rates, args.seconds))
        print(f"{backend}: {args.devices} devices on {args.tenants} tenant(s) enrolled in "
              f"{enrolled:.1f} s; {objects} segment objects put into moto in "
              f"{time.monotonic() - started - enrolled:.1f} s", flush=True)
        target = Target(backend, f"broker on {backend}, {args.devices} devices, "
                                 f"{args.tenants} tenant(s)")
        watch = PgWatch(pg.dsn("postgres"), database) if pg is not None and backend == (
            "postgresql") else None
        asyncio.run(_drive_broker(target, broker, fleet, args, rates, watch))
    return target


def run_anchor(
    args: argparse.Namespace, s3: S3Endpoint, pg: PostgresServer, log_dir: Path
) -> Target:
    url = pg.create_database(f"anchor_{secrets.token_hex(3)}", owner=ROLE)
    bucket = s3.create_bucket()
    key = secrets.token_urlsafe(32)
    port = free_port()
    env = {**base_env(), KEY_VAR: key}
    target = Target(ANCHOR, "anchor (aiohttp: HS256 JWT, one INSERT, boto3 presign)")
    process = ManagedProcess(
        "anchor",
        [sys.executable, "-m", "tests.bench.broker.anchor", "--port", str(port),
         "--database-url", url, "--s3-url", s3.url, "--bucket", bucket],
        env=env, log_dir=log_dir,
    )
    with process:
        process.wait_ready(http_probe(f"http://127.0.0.1:{port}/healthz"), timeout=60)
        tokens = [token(key.encode(), f"device-{i}") for i in range(1000)]
        body = {"size": 2048, "md5": "1B2M2Y8AsgTpgAmY7PhCfg==",
                "sha256": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpZWZG3hSuFU="}

        async def drive() -> None:
            async with _session() as session:
                turn = iter(range(10**9))

                async def send(due: float) -> Result:
                    return await timed_post(
                        session, ANCHOR, f"http://127.0.0.1:{port}/grant", body,
                        tokens[next(turn) % len(tokens)], due, timing_header=TIMING_HEADER,
                    )

                await _steps(target, _rates(args.anchor_rates), args, process.pid, send, None,
                             None)

        asyncio.run(drive())
    return target


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _pcts(values: list[float]) -> str:
    return "/".join(_ms(percentile(values, p)) for p in (50, 95, 99))


def print_step(target: Target, step: Step) -> None:
    verdict = "sustained" if step.sustained else "NOT sustained"
    print(f"\n[{target.description}] offered {step.offered:g}/s for {step.seconds:g} s: "
          f"achieved {step.achieved:.1f}/s ({verdict}), {len(step.results)} requests, "
          f"{step.errors} errors, {step.limited} x 429, generator late by "
          f"{step.late_ms:.0f} ms at worst")
    print(f"  {'route':<10}{'sent':>6}{'ok':>6}{'429':>5}{'err':>5}"
          f"   client p50/p95/p99 ms      server p50/p95/p99 ms")
    routes = [r for r in (*ROUTES, ANCHOR) if any(x.route == r for x in step.results)]
    for route in routes:
        mine = [r for r in step.results if r.route == route]
        ok = sum(1 for r in mine if r.status in OK_STATUSES)
        limited = sum(1 for r in mine if r.status == 429)
        print(f"  {route:<10}{len(mine):>6}{ok:>6}{limited:>5}{len(mine) - ok - limited:>5}"
              f"   {_pcts([r.client_ms for r in mine]):<26} {_pcts(step.server.get(route, []))}")
    everything = [r.client_ms for r in step.results]
    server_all = [v for values in step.server.values() for v in values]
    print(f"  {'all':<10}{len(step.results):>6}{step.ok:>6}{step.limited:>5}{step.errors:>5}"
          f"   {_pcts(everything):<26} {_pcts(server_all)}")
    line = f"  process CPU {step.cpu_ms:.2f} ms/request"
    if step.pg is not None:
        n = max(1, len(step.results))
        line += (f"; PostgreSQL per request: {step.pg.transactions / n:.2f} transactions, "
                 f"{step.pg.statements / n:.1f} statements (BEGIN/COMMIT included), "
                 f"{step.pg.lock_wait_ms / n:.2f} ms waiting on locks (sampled; at most "
                 f"{step.pg.max_waiting} backends waiting at once)")
        if step.pg.by_kind:
            line += "; waits by lock: " + ", ".join(
                f"{kind} {ms / n:.2f} ms" for kind, ms in sorted(step.pg.by_kind.items()))
    print(line, flush=True)


def summary(targets: list[Target], commit: str) -> list[str]:
    lines = []
    for target in targets:
        if target.profile is not None:
            lines.append(f"\nProfile of the {target.description} at {target.profile[0]:g}/s "
                         "(py-spy):")
            lines += target.profile[1]
    lines.append(f"\nSummary ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit}):")
    anchor = next((t for t in targets if t.name == ANCHOR), None)
    anchor_best = anchor.best() if anchor else None
    for target in targets:
        best = target.best()
        if best is None:
            lines.append(f"  {target.description}: no step sustained")
            continue
        goal = TARGETS.get(target.name)
        verdict = ""
        if goal is not None:
            met = best.offered >= goal[0] and best.p99() < goal[1]
            verdict = (f" — target ≥ {goal[0]}/s with p99 < {goal[1]:g} ms: "
                       f"{'met' if met else 'NOT met'}")
        lines.append(f"  {target.description}: {best.offered:g}/s sustained "
                     f"(achieved {best.achieved:.1f}/s), p99 {best.p99():.1f} ms, "
                     f"CPU {best.cpu_ms:.2f} ms/request{verdict}")
    pg = next((t for t in targets if t.name == "postgresql"), None)
    pg_best = pg.best() if pg else None
    if pg is not None:
        rate = f"{pg_best.offered:g} req/s" if pg_best else "no step sustained"
        p99 = f"p99 {pg_best.p99():.1f} ms" if pg_best else "p99 -"
        ratio = "anchor ratio -"
        if pg_best and anchor_best:
            ratio = (f"anchor ratio {pg_best.offered / anchor_best.offered:.2f}x by rate "
                     f"({anchor_best.offered:g}/s), {anchor_best.cpu_ms / pg_best.cpu_ms:.2f}x "
                     f"by CPU per request ({pg_best.cpu_ms:.2f} vs {anchor_best.cpu_ms:.2f} ms)")
        lines.append(f"RESULT postgresql mixed {rate}, {p99}, {ratio}")
    return lines


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out + ("+changes" if dirty.strip() else "")


def run(args: argparse.Namespace) -> list[Target]:
    """Every target's steps, printed as they finish."""
    targets: list[Target] = []
    with ExitStack() as stack:
        log_dir = args.log_dir or Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="bench-broker-")))
        s3 = stack.enter_context(run_moto(log_dir=log_dir))
        pg = None
        if "postgresql" in args.backends or _rates(args.anchor_rates):
            pg = stack.enter_context(run_postgres(log_dir=log_dir, settings={
                "shared_preload_libraries": "pg_stat_statements",
                "pg_stat_statements.track": "top",  # what the broker sends, not what functions run
            }))
            pg.create_role(ROLE)
            pg.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", database="postgres")
        for backend in args.backends:
            targets.append(run_backend(backend, args, s3, pg, log_dir))
        if pg is not None and _rates(args.anchor_rates):
            targets.append(run_anchor(args, s3, pg, log_dir))
    return targets


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    targets = run(args)
    print(f"\n(the whole run took {time.monotonic() - began:.0f} s)")
    for line in summary(targets, _commit()):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
