"""What a step cost: server-side latency from the broker's access log, CPU from /proc, and
PostgreSQL's own counters (transactions, statements, sampled lock waits)."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped,unused-ignore]

from tests.bench import procstat
from tests.bench.broker.load import COMPLETE, GRANT, HEARTBEAT, REFRESH

_ROUTE_OF = [
    (re.compile(r"^/api/v1/recordings/[^/]+/segments/\d+/upload$"), GRANT),
    (re.compile(r"^/api/v1/recordings/[^/]+/segments/\d+/complete$"), COMPLETE),
    (re.compile(r"^/api/v1/devices/heartbeat$"), HEARTBEAT),
    (re.compile(r"^/api/v1/devices/token$"), REFRESH),
]
LOCK_SAMPLE_SECONDS = 0.02


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def cpu_seconds(pid: int) -> float:
    return sum(procstat.cpu_seconds(p) for p in procstat.tree(pid))


class AccessLog:
    """The broker's JSON access-log lines (`broker.web.logs.AccessLogger`: path and `ms`),
    read from where the last call stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size

    def skip(self) -> None:
        self.offset = self.path.stat().st_size

    def server_ms(self) -> dict[str, list[float]]:
        found: dict[str, list[float]] = {}
        with self.path.open("rb") as log:
            log.seek(self.offset)
            data = log.read()
        self.offset += data.rfind(b"\n") + 1
        for line in data.splitlines():
            if b'"ms"' not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            path = entry.get("path", "")
            for pattern, route in _ROUTE_OF:
                if pattern.match(path):
                    found.setdefault(route, []).append(float(entry["ms"]))
                    break
        return found


@dataclass(slots=True)
class PgCounters:
    transactions: int = 0
    statements: int = 0  # pg_stat_statements calls (BEGIN/COMMIT included)
    lock_wait_ms: float = 0.0  # backend-milliseconds spent waiting on a lock (sampled)
    max_waiting: int = 0
    # the waits by what was waited for: "advisory" (the audit chain, a writer turn),
    # "transactionid" (a row another transaction holds), "relation", …
    by_kind: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class PgWatch:
    """pg_stat_database and pg_stat_statements of one database, and a sampler of lock waits
    (pg_stat_activity every 20 ms: waiting backends × 20 ms estimates the time waited)."""

    dsn: str  # the superuser's, to the `postgres` database
    database: str
    conn: Any = None
    _sampler: asyncio.Task[None] | None = None
    _counters: PgCounters = field(default_factory=PgCounters)
    _start: tuple[int, int] = (0, 0)

    async def open(self) -> None:
        self.conn = await asyncpg.connect(self.dsn)

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()

    async def _totals(self) -> tuple[int, int]:
        xacts = await self.conn.fetchval(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1",
            self.database,
        )
        calls = await self.conn.fetchval(
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_database d"
            " ON d.oid = s.dbid WHERE d.datname = $1", self.database,
        )
        return int(xacts), int(calls)

    async def begin(self) -> None:
        await self.conn.execute("SELECT pg_stat_clear_snapshot()")
        self._start = await self._totals()
        self._counters = PgCounters()
        self._sampler = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        sampler = await asyncpg.connect(self.dsn)
        try:
            while True:
                rows = await sampler.fetch(
                    "SELECT l.locktype, count(*) AS n FROM pg_locks l JOIN pg_stat_activity a"
                    " ON a.pid = l.pid WHERE NOT l.granted AND a.datname = $1 GROUP BY 1",
                    self.database,
                )
                waiting = sum(int(r["n"]) for r in rows)
                counters = self._counters
                counters.lock_wait_ms += waiting * LOCK_SAMPLE_SECONDS * 1000
                counters.max_waiting = max(counters.max_waiting, waiting)
                for r in rows:
                    counters.by_kind[r["locktype"]] = (
                        counters.by_kind.get(r["locktype"], 0.0)
                        + int(r["n"]) * LOCK_SAMPLE_SECONDS * 1000
                    )
                await asyncio.sleep(LOCK_SAMPLE_SECONDS)
        finally:
            await sampler.close()

    async def end(self) -> PgCounters:
        if self._sampler is not None:
            self._sampler.cancel()
            await asyncio.gather(self._sampler, return_exceptions=True)
        # the statistics collector reports with a delay of up to a second
        await asyncio.sleep(1.0)
        await self.conn.execute("SELECT pg_stat_clear_snapshot()")
        xacts, calls = await self._totals()
        self._counters.transactions = xacts - self._start[0]
        self._counters.statements = calls - self._start[1]
        return self._counters
