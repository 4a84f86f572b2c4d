"""The storage pool's per-tenant limit queues a burst briefly and refuses only a stall."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from broker.storage.io import QUEUE_WAIT, StorageBusy, StorageIO


def test_a_burst_past_the_tenant_share_waits_its_turn_instead_of_429() -> None:
    io = StorageIO(workers=8, per_tenant=2)
    busy = threading.Semaphore(2)  # proves no more than two ran at once for the tenant
    overlap: list[bool] = []

    def presign(n: int) -> int:
        overlap.append(not busy.acquire(blocking=False))
        time.sleep(0.05)
        busy.release()
        return n

    async def burst() -> list[int]:
        return await asyncio.gather(*(io.run("t1", presign, n, deadline=5) for n in range(8)))

    try:
        assert asyncio.run(burst()) == list(range(8))
    finally:
        io.close()
    assert overlap == [False] * 8, "never more than per_tenant calls of a tenant at once"


def test_a_stalled_tenant_gets_429_after_the_queue_wait_and_others_go_on() -> None:
    io = StorageIO(workers=8, per_tenant=2)
    release = threading.Event()

    async def scene() -> tuple[BaseException | None, float, str]:
        stuck = [
            asyncio.ensure_future(io.run("stalled", release.wait, 30, deadline=30))
            for _ in range(2)
        ]
        await asyncio.sleep(0.05)
        began = time.monotonic()
        refused: BaseException | None = None
        try:
            await io.run("stalled", release.wait, 30, deadline=30)
        except StorageBusy as exc:
            refused = exc
        waited = time.monotonic() - began
        other = await io.run("other", lambda: "served", deadline=5)
        release.set()
        await asyncio.gather(*stuck)
        return refused, waited, other

    try:
        refused, waited, other = asyncio.run(scene())
    finally:
        release.set()
        io.close()
    assert isinstance(refused, StorageBusy)
    assert refused.retry_after >= 1
    assert QUEUE_WAIT - 0.1 <= waited < QUEUE_WAIT + 2, waited
    assert other == "served"


@pytest.mark.parametrize("deadline", [0.2])
def test_the_queue_wait_never_exceeds_the_call_deadline(deadline: float) -> None:
    io = StorageIO(workers=4, per_tenant=1)
    release = threading.Event()

    async def scene() -> float:
        first = asyncio.ensure_future(io.run("t", release.wait, 30, deadline=30))
        await asyncio.sleep(0.05)
        began = time.monotonic()
        with pytest.raises(StorageBusy):
            await io.run("t", release.wait, 30, deadline=deadline)
        took = time.monotonic() - began
        release.set()
        await first
        return took

    try:
        took = asyncio.run(scene())
    finally:
        release.set()
        io.close()
    assert took < deadline + 0.5, took
