"""Open-loop load: requests start on a fixed schedule whether or not earlier ones returned.

Each request's client latency is measured from the moment the schedule said it should
start (not when the generator got round to it), so a generator or a server falling behind
shows in the figures instead of slowing the arrivals down (no coordinated omission).

The device mix is what an agent sends per minute of recording: an upload grant, the
segment's completion and a heartbeat, and a token refresh every quarter hour, i.e. 46
requests per 15 device-minutes (`MIX`). Devices are taken in turn, so at 10,000 devices each
makes a request every 20 s or so at 512/s, as the real fleet would. A completion completes
the oldest grant that succeeded and was not completed yet (its object is in the bucket:
`fleet.upload_objects`); when none is waiting (the grants are still in flight) the slot
sends a heartbeat instead, and the counts per route say how many of each were sent.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp

from shared.custody import V2, CustodyRecord, sign, timestamp_ms
from tests.bench.broker.fleet import Device, Fleet

GRANT, COMPLETE, HEARTBEAT, REFRESH, ANCHOR = "grant", "complete", "heartbeat", "refresh", "anchor"
ROUTES = (GRANT, COMPLETE, HEARTBEAT, REFRESH)
# per 15 device-minutes: 15 grants, 15 completions, 15 heartbeats, 1 refresh
MIX = [GRANT, HEARTBEAT, COMPLETE] * 15 + [REFRESH]
REQUEST_TIMEOUT = 10.0
SEGMENT_SPACING = timedelta(seconds=2)  # declared starts: recording start + seq × this
SEGMENT_MS = 1000

HEARTBEAT_BODY = {
    "state": "recording", "spool_bytes": 0, "spool_segments": 0, "errors": 0, "interval": 60,
}


@dataclass(slots=True)
class Result:
    route: str
    status: int  # 0: no reply (timeout or connection error)
    client_ms: float
    server_ms: float | None = None  # the anchor's own timing header (the broker's: its log)


@dataclass(slots=True)
class StepRun:
    offered: float
    seconds: float
    results: list[Result] = field(default_factory=list)
    sent: int = 0
    elapsed: float = 0.0  # from the first scheduled start to the last reply
    late_ms: float = 0.0  # how far behind its schedule the generator fell at worst


# called with the monotonic time its request was due: latencies count from then
Send = Callable[[float], Coroutine[Any, Any, Result]]


async def open_loop(rate: float, seconds: float, send: Send) -> StepRun:
    """Start `send(due)` at `rate` per second for `seconds`; wait for all replies."""
    run = StepRun(rate, seconds)
    total = max(1, int(rate * seconds))
    loop = asyncio.get_running_loop()
    start = loop.time()
    tasks: list[asyncio.Task[Result]] = []
    for i in range(total):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            run.late_ms = max(run.late_ms, -delay * 1000)
        tasks.append(asyncio.create_task(send(due)))
    run.sent = total
    run.results = list(await asyncio.gather(*tasks))
    run.elapsed = loop.time() - start
    return run


class DeviceMix:
    """The agent's requests, over `fleet`'s devices in turn, against the broker at `url`."""

    def __init__(self, fleet: Fleet, url: str, session: aiohttp.ClientSession) -> None:
        self.fleet = fleet
        self.url = url
        self.session = session
        self.slot = 0
        self.grants = 0  # upload grants handed out so far: grant i is device i % n, seq i // n
        self.device_turn = 0
        self.waiting: deque[tuple[Device, int]] = deque()  # granted, not completed yet

    def _next_device(self) -> Device:
        device = self.fleet.devices[self.device_turn % len(self.fleet.devices)]
        self.device_turn += 1
        return device

    async def send(self, due: float) -> Result:
        route = MIX[self.slot % len(MIX)]
        self.slot += 1
        if route == COMPLETE and not self.waiting:
            route = HEARTBEAT
        if route == GRANT:
            n = len(self.fleet.devices)
            device, seq = self.fleet.devices[self.grants % n], self.grants // n
            self.grants += 1
            return await self._grant(device, seq, due)
        if route == COMPLETE:
            device, seq = self.waiting.popleft()
            return await self._timed(
                COMPLETE, device,
                f"/api/v1/recordings/{device.recording_id}/segments/{seq}/complete", None, due,
            )
        device = self._next_device()
        if route == HEARTBEAT:
            return await self._timed(
                HEARTBEAT, device, "/api/v1/devices/heartbeat", HEARTBEAT_BODY, due
            )
        return await self._refresh(device, due)

    def _declaration(self, device: Device, seq: int) -> dict[str, Any]:
        body = self.fleet.content
        started = device.recording_start + seq * SEGMENT_SPACING
        record = CustodyRecord(
            recording_id=device.recording_id, seq=seq, size=len(body.data), sha256=body.sha256,
            prev=device.prev, version=V2, started_at_ms=timestamp_ms(started),
            duration_ms=SEGMENT_MS,
        )
        declared = {
            "size": len(body.data), "sha256": body.sha256, "md5": body.md5,
            "started_at": started.isoformat(), "duration_ms": SEGMENT_MS,
            "custody": {"prev": device.prev, "signature": sign(device.key, record)},
        }
        device.prev = record.digest()
        return declared

    async def _grant(self, device: Device, seq: int, due: float) -> Result:
        declared = self._declaration(device, seq)
        result = await self._timed(
            GRANT, device, f"/api/v1/recordings/{device.recording_id}/segments/{seq}/upload",
            declared, due,
        )
        if result.status == 200:
            self.waiting.append((device, seq))
        return result

    async def _refresh(self, device: Device, due: float) -> Result:
        body: Any = None
        try:
            async with self.session.post(
                self.url + "/api/v1/devices/token", json={"refresh_token": device.refresh_token},
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
            ) as response:
                status = response.status
                if status == 200:
                    body = await response.json()
                else:
                    await response.read()
        except (aiohttp.ClientError, TimeoutError):
            status = 0
        if body is not None:
            device.refresh_token = body["refresh_token"]
            device.access_token = body["access_token"]
        return Result(REFRESH, status, (time.monotonic() - due) * 1000)

    async def _timed(
        self, route: str, device: Device, path: str, payload: Any, due: float
    ) -> Result:
        return await timed_post(
            self.session, route, self.url + path, payload, device.access_token, due
        )


async def timed_post(
    session: aiohttp.ClientSession, route: str, url: str, payload: Any, token: str, due: float,
    *, timing_header: str | None = None,
) -> Result:
    server: float | None = None
    try:
        async with session.post(
            url, json=payload, headers={"Authorization": f"Bearer {token}"},
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
        ) as response:
            await response.read()
            status = response.status
            if timing_header and timing_header in response.headers:
                server = float(response.headers[timing_header])
    except (aiohttp.ClientError, TimeoutError):
        status = 0
    return Result(route, status, (time.monotonic() - due) * 1000, server)
