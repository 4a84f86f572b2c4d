"""Where the broker waits on customers' storage: its own bounded thread pool, with limits.

Every blocking call that may reach a tenant's bucket or STS (making a client: DNS and
AssumeRole; HeadObject; the self-check's probes; presigning, which may refresh an assumed
role's session) runs here, never on the default executor that hashes passwords, and never
while a database transaction is open (the callers commit first). One tenant whose endpoint
accepts connections and never answers can therefore hold at most `per_tenant` of these
threads, and never a database lock; the others go on.

- Each call has a deadline (`asyncio.wait_for`); the thread it ran on stays busy until
  botocore's own connect/read timeouts end it, so it still counts against its tenant until it
  really returns.
- A call past a tenant's `per_tenant` waits for one of its slots, up to `QUEUE_WAIT` seconds
  (a burst of grants from a tenant's many devices is served in turn, not refused); a tenant
  still over its share after that gets 429 with `Retry-After`. The wait is asleep on the event
  loop, never on a thread: a returning call wakes the tenant's first waiter at once (and
  the waiters look again on a short, doubling period besides, in case a wake-up missed).
- A call that runs on the event loop itself (`slot`: the completion's HeadObject, sent with
  aiohttp) holds one of the same slots while it is under way.
- Self-checks: one per tenant at a time and `selfchecks` across tenants (429 otherwise),
  each under one overall deadline (`broker.storage.service`).

The limits hold per broker process (like the device budgets): N replicas allow N times.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from broker.errors import RateLimited, StorageUnavailable

T = TypeVar("T")

WORKERS = 16
PER_TENANT = 4
SELFCHECKS = 2
RETRY_AFTER = 5
QUEUE_WAIT = 2.0  # seconds a call may wait for one of its tenant's slots
_POLL_FIRST, _POLL_MAX = 0.002, 0.05  # how often a waiting call looks again (doubling)


class StorageBusy(RateLimited):
    """Too many storage calls or self-checks under way for this tenant or this broker."""


class StorageTimeout(StorageUnavailable):
    """The bucket (or STS) did not answer within the call's deadline."""


class StorageIO:
    def __init__(
        self, *, workers: int = WORKERS, per_tenant: int = PER_TENANT, selfchecks: int = SELFCHECKS
    ) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="storage-io")
        self._per_tenant = per_tenant
        self._selfchecks = selfchecks
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()  # tenant -> calls whose thread has not returned
        self._checking: set[str] = set()
        # tenant -> calls waiting for a slot, first come first woken
        self._waiting: dict[str, deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]]
        self._waiting = {}

    async def run(
        self, tenant_id: str, fn: Callable[..., T], /, *args: object, deadline: float
    ) -> T:
        """`fn(*args)` on the storage pool, for `tenant_id`, within `deadline` seconds (plus
        up to `QUEUE_WAIT` for a slot of the tenant's)."""
        await self._take_slot(tenant_id, min(deadline, QUEUE_WAIT))

        def release(_: object) -> None:  # when the thread returns, or the call never ran
            self._release(tenant_id)

        try:
            future = self._pool.submit(functools.partial(fn, *args))
        except RuntimeError:  # the pool is shut down: the broker is stopping
            release(None)
            raise StorageUnavailable("the broker is shutting down") from None
        future.add_done_callback(release)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), deadline)
        except TimeoutError:
            raise StorageTimeout(
                f"the tenant's bucket did not answer within {deadline:g} s"
            ) from None

    @contextlib.asynccontextmanager
    async def slot(self, tenant_id: str, *, deadline: float) -> AsyncIterator[None]:
        """One of the tenant's `per_tenant` slots held while the body runs on the event loop
        (a call that needs no thread: the completion's HeadObject, `broker.storage.http`),
        waiting for it as `run` does; the body bounds itself by its own deadline."""
        await self._take_slot(tenant_id, min(deadline, QUEUE_WAIT))
        try:
            yield
        finally:
            self._release(tenant_id)

    def _release(self, tenant_id: str) -> None:
        """A call of the tenant's has ended: its slot frees, its first waiter wakes."""
        with self._lock:
            self._calls[tenant_id] -= 1
            if self._calls[tenant_id] <= 0:
                del self._calls[tenant_id]
            waiters = self._waiting.get(tenant_id)
            woken = waiters.popleft() if waiters else None
        if woken is not None:
            with contextlib.suppress(RuntimeError):  # its loop has closed: nobody waits
                woken[0].call_soon_threadsafe(_wake, woken[1])

    async def _take_slot(self, tenant_id: str, wait: float) -> None:
        """One of the tenant's `per_tenant` slots, waiting up to `wait` s; StorageBusy else.

        Slots free when a worker thread returns (a done callback on that thread), which wakes
        the first waiter through its loop; a waiter also looks again on a short, doubling
        period, so a wake-up that went to a waiter who had given up delays no one for long.
        """
        loop = asyncio.get_running_loop()
        give_up = loop.time() + wait
        pause = _POLL_FIRST
        while True:
            woken: asyncio.Future[None] = loop.create_future()
            with self._lock:
                if self._calls[tenant_id] < self._per_tenant:
                    self._calls[tenant_id] += 1
                    return
                self._waiting.setdefault(tenant_id, deque()).append((loop, woken))
            left = give_up - loop.time()
            try:
                if left <= 0:
                    raise StorageBusy(
                        "too many requests to this tenant's bucket are under way; try again "
                        "shortly",
                        retry_after=RETRY_AFTER,
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken, min(pause, left))
            finally:
                with self._lock:
                    waiters = self._waiting.get(tenant_id)
                    if waiters is not None:
                        with contextlib.suppress(ValueError):
                            waiters.remove((loop, woken))
                        if not waiters:
                            del self._waiting[tenant_id]
            pause = min(pause * 2, _POLL_MAX)

    @contextlib.asynccontextmanager
    async def selfcheck_slot(self, tenant_id: str) -> AsyncIterator[None]:
        """Hold the tenant's one self-check slot (and one of the broker's few)."""
        with self._lock:
            if tenant_id in self._checking:
                raise StorageBusy(
                    "a storage self-check for this tenant is under way; wait for it",
                    retry_after=RETRY_AFTER,
                )
            if len(self._checking) >= self._selfchecks:
                raise StorageBusy(
                    "the broker is running as many storage self-checks as it allows; "
                    "try again shortly",
                    retry_after=RETRY_AFTER,
                )
            self._checking.add(tenant_id)
        try:
            yield
        finally:
            with self._lock:
                self._checking.discard(tenant_id)

    def close(self) -> None:
        """Stop taking work; threads still waiting on a bucket end with botocore's timeouts."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
