"""Per-device request budgets on the device API: token buckets in this process's memory.

Why: an enrolled device is trusted to call the broker, not to call it without end. A buggy or
compromised agent looping on its calls would fill the database (recordings, gap reports,
segments, upload grants and their audit entries) and mint presigned URLs by the thousand.
Each call a device makes is counted against its budgets once its token is verified and
before the database is asked about the device (`broker.web.guard.device_principal`, called
from `broker.web.routes._bind`), keyed by the device id the verified token names: a request
without a valid token of that very device cannot spend its budget, and a device over budget
costs no query.

Two budgets, each a token bucket (a `burst` of calls at once, refilled at a steady rate):

* **calls** — every device call. Default 600 per minute (10/s) with a burst of 600.
* **creates** — calls that add rows no other count bounds: starting a recording and
  reporting a gap (a new recording or gap row each time, and its audit entry). They count
  against both budgets. Default 120 per hour (one per 30 s) with a burst of 60. (Segments
  are bounded per recording by their sequence number; upload grants, one row and one audit
  entry each, are legitimately repeated for a segment and are bounded by the calls budget.)

Why these defaults, from what a normal agent does:

* Steady state. An agent makes 2 calls per segment (upload grant, completion) and a
  heartbeat per interval. The policy may lower `segment_seconds` to 1 (`POLICY_RANGES`) and
  the agent's `heartbeat_seconds` may be 1 (`agent.config.RANGES`): at worst 3 calls/s,
  180 per minute. With the defaults (60 s segments and heartbeats) it is 3 per minute, and
  the test suite's agents (`--fps 4 --segment-seconds 1`) make about 2 per second. The calls
  budget refills at 10/s, more than three times the worst case.
* Drain after an outage. The agent spools up to 2 GB of segments while uploads fail and then
  sends them back to back, 2 calls each, as fast as the network goes. A burst of 600 passes
  300 spooled segments at full speed (5 h of 60 s segments, 5 min of 1 s ones). Beyond that
  the drain is slowed to about (10 - 1/heartbeat) / 2 ≈ 5 segments/s: still 5 times the
  fastest rate at which segments are made, so every backlog shrinks. A 2 GB spool of default
  60 s segments (1-2 MB each, 1000-2000 segments) drains in about 5 minutes; 2 GB of tiny
  1 s segments (20 KB, about 100 000 of them, i.e. a 28 h outage) in a few hours. It is
  slowed, never failed: a refused call gets 429 with `Retry-After` (at most 1 s for this
  budget), the agent's client waits that long and tries again, and delivery keeps a segment
  spooled and retries it for as long as it takes.
* Creates. One run of the agent makes one recording start, and at most one gap report for a
  dead previous run, one per idle or lock pause, and up to four at the end (refused, dropped,
  unsent, a pause left open): about 6 back to back. Pauses need `idle_seconds` of no input,
  300 s by default, so at most about 12 an hour. A burst of 60 passes ten complete runs
  back to back (restarts, tests); one per 30 s covers pauses and a restart every minute.
  A runaway device gets 60 plus 2 880 such rows a day instead of 864 000 (10/s), and every
  recording start it makes costs it 30 s of budget.

Per person and per tenant as well: a person's devices share the person's creates budget,
and a tenant's share the tenant's, so more devices do not mean more rows (the number of
devices is capped as well: `broker.devices.caps`). Registering a workstation by login
(`POST /api/v1/devices/register`) spends a registration budget per person and per tenant.
Defaults (see `broker.settings`): a person 240 creates an hour with a burst of 120 (two
busy devices' worth), a tenant 36 000 an hour (3 000 agents at 12 an hour) with a burst of
18 000; a person 10 registrations an hour (burst 5), a tenant 200 (burst 100).

The budgets hold per broker process: behind N replicas a device may make N times as many
calls. That is acceptable for abuse control (it bounds a runaway device, it does not count
guesses at a secret). The failed-login limiter (`broker.auth.ratelimit`) lives in the
database because N times the password guesses would not be.

A refused call gets 429 with `Retry-After`, the seconds until every budget it needs has a
call left, and writes nothing. The broker logs one warning per device per `NOTICE_WINDOW`
(with the number of calls refused since the last one) and writes one audit entry
(`device.rate_limited`) with it, never one per refused call.

Memory is bounded: a device's buckets are dropped once it has been quiet long enough for
every bucket to be full again (a full bucket is exactly a new one, so nothing is lost), oldest
first (LRU); and a hard cap on the devices tracked drops the least recently seen one beyond
it. Only devices with a token the broker signed reach the table, so the number of keys is
bounded by the devices ever enrolled (a revoked one's last access token lives 15 minutes at
most) before the cap matters.

Concurrency: `BucketTable.take` never awaits, so on the event loop's one thread a check and
its spending are one step: concurrent coroutines cannot both spend the last call.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from broker.audit import log as audit
from broker.clock import Clock
from broker.db.database import Database
from broker.db.scope import TenantScope
from broker.errors import RateLimited
from broker.identity import Principal

log = logging.getLogger(__name__)

CALLS = "calls"
CREATES = "creates"
PERSON_CREATES = "person_creates"
TENANT_CREATES = "tenant_creates"
PERSON_REGISTRATIONS = "person_registrations"
TENANT_REGISTRATIONS = "tenant_registrations"
_WHOSE = {  # for the refusal's message
    CALLS: "this device",
    CREATES: "this device",
    PERSON_CREATES: "this person (all their devices together)",
    TENANT_CREATES: "this tenant (all its devices together)",
    PERSON_REGISTRATIONS: "this person",
    TENANT_REGISTRATIONS: "this tenant",
}
NOTICE_WINDOW = 60.0  # seconds: at most one warning and one audit entry per device per window
MAX_DEVICES = 100_000  # devices tracked per process (about 400 bytes each: 40 MB at most)
_EPSILON = 1e-9  # float slack: after waiting `Retry-After` a call is always served


@dataclass(frozen=True, slots=True)
class Budget:
    """A token bucket's shape: `burst` calls at once, refilled at `rate` calls per second."""

    name: str
    rate: float
    burst: int

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError(f"budget {self.name!r} needs a positive rate and a burst of 1 or more")

    @classmethod
    def per_minute(cls, name: str, calls: int, burst: int) -> Budget:
        return cls(name, calls / 60.0, burst)

    @classmethod
    def per_hour(cls, name: str, calls: int, burst: int) -> Budget:
        return cls(name, calls / 3600.0, burst)

    @property
    def refill_seconds(self) -> float:
        """Time from empty to full: a key quiet this long has a full, i.e. a new, bucket."""
        return self.burst / self.rate


@dataclass(frozen=True, slots=True)
class Refusal:
    """A call refused: by which budget, for how long, and whether to say so (`notice`).

    `refused` counts the refusals this notice covers: this one and those not reported since
    the last notice (0 when `notice` is False).
    """

    budget: Budget
    retry_after: float
    notice: bool
    refused: int


class _Key:
    """One key's buckets (token counts aligned with the table's budgets) and notice state."""

    __slots__ = ("at", "noticed_at", "tokens", "unreported")

    def __init__(self, budgets: Sequence[Budget], now: float) -> None:
        self.tokens = [float(b.burst) for b in budgets]
        self.at = now
        self.noticed_at: float | None = None
        self.unreported = 0


class BucketTable:
    """Token buckets per key, for a fixed set of budgets; bounded in memory (LRU)."""

    def __init__(
        self,
        budgets: Sequence[Budget],
        *,
        max_keys: int = MAX_DEVICES,
        notice_window: float = NOTICE_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._budgets = tuple(budgets)
        self._index = {b.name: i for i, b in enumerate(self._budgets)}
        self._max_keys = max_keys
        self._notice_window = notice_window
        self._clock = clock
        # A key quiet this long is indistinguishable from a new one: dropping it loses nothing.
        self._idle_after = max([notice_window, *(b.refill_seconds for b in self._budgets)])
        self._keys: OrderedDict[str, _Key] = OrderedDict()  # least recently seen first
        self.evicted_early = 0  # keys dropped by the cap before they were full again

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def take(self, key: str, names: Sequence[str]) -> Refusal | None:
        """Spend one call of each budget named, or none of them: None when served."""
        return self.take_all([(key, names)])

    def take_all(self, demands: Sequence[tuple[str, Sequence[str]]]) -> Refusal | None:
        """`take` over several keys at once (a device, its person, its tenant): every budget
        named is spent, or none. A refusal's notice state is the first key's."""
        now = self._clock()
        self._sweep(now)
        wanted = [
            (self._state(key, now), [self._index[name] for name in names])
            for key, names in demands
        ]
        wait, binding = 0.0, 0
        for state, indexes in wanted:
            for i in indexes:
                need = self._wait(state.tokens[i], self._budgets[i])
                if need > wait:
                    wait, binding = need, i
        if wait <= 0:
            for state, indexes in wanted:
                for i in indexes:
                    state.tokens[i] -= 1.0
            return None
        return self._refuse(wanted[0][0], self._budgets[binding], wait, now)

    def tokens(self, key: str, name: str) -> float | None:
        """The calls left in a key's bucket as of its last use (None: not tracked)."""
        state = self._keys.get(key)
        return None if state is None else state.tokens[self._index[name]]

    def _state(self, key: str, now: float) -> _Key:
        """The key's buckets refilled to `now`, marked most recently seen."""
        state = self._keys.get(key)
        if state is None:
            if len(self._keys) >= self._max_keys:
                self._keys.popitem(last=False)
                self.evicted_early += 1
                if self.evicted_early == 1:
                    log.warning(
                        "more than %d devices called in %.0f s: the least recently seen ones' "
                        "request budgets are forgotten early (they start afresh)",
                        self._max_keys, self._idle_after,
                    )
            state = self._keys[key] = _Key(self._budgets, now)
            return state
        elapsed = max(0.0, now - state.at)
        for i, budget in enumerate(self._budgets):
            state.tokens[i] = min(float(budget.burst), state.tokens[i] + elapsed * budget.rate)
        state.at = now
        self._keys.move_to_end(key)
        return state

    @staticmethod
    def _wait(tokens: float, budget: Budget) -> float:
        """Seconds until the bucket holds one call (0: it does now)."""
        if tokens >= 1.0 - _EPSILON:
            return 0.0
        return (1.0 - tokens) / budget.rate

    def _refuse(self, state: _Key, budget: Budget, wait: float, now: float) -> Refusal:
        state.unreported += 1
        due = state.noticed_at is None or now - state.noticed_at >= self._notice_window
        if not due:
            return Refusal(budget, wait, notice=False, refused=0)
        refused, state.unreported, state.noticed_at = state.unreported, 0, now
        return Refusal(budget, wait, notice=True, refused=refused)

    def _sweep(self, now: float) -> None:
        """Drop keys quiet long enough to be full again, least recently seen first."""
        while self._keys:
            key, state = next(iter(self._keys.items()))
            if now - state.at < self._idle_after:
                return
            del self._keys[key]


class DeviceLimits:
    """The device API's budgets: refuses a call over budget with `RateLimited` (429)."""

    def __init__(
        self,
        *,
        db: Database,
        calls: Budget,
        creates: Budget,
        clock: Clock,
        person_creates: Budget | None = None,
        tenant_creates: Budget | None = None,
        person_registrations: Budget | None = None,
        tenant_registrations: Budget | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        max_devices: int = MAX_DEVICES,
        notice_window: float = NOTICE_WINDOW,
    ) -> None:
        self._db = db
        self._clock = clock
        self._notice_window = notice_window
        shared = {
            PERSON_CREATES: person_creates,
            TENANT_CREATES: tenant_creates,
            PERSON_REGISTRATIONS: person_registrations,
            TENANT_REGISTRATIONS: tenant_registrations,
        }
        self._shared = {name for name, budget in shared.items() if budget is not None}
        budgets = [calls, creates, *(b for b in shared.values() if b is not None)]
        # Keys: a device's id, "person:<tenant>:<user>", "tenant:<tenant>" (disjoint forms).
        self.table = BucketTable(
            budgets, max_keys=max_devices, notice_window=notice_window, clock=monotonic
        )

    def _demands(
        self, principal: Principal, device: Sequence[str], person: str, tenant: str
    ) -> list[tuple[str, Sequence[str]]]:
        demands: list[tuple[str, Sequence[str]]] = [(principal.subject, device)] if device else []
        if person in self._shared:
            demands.append((f"person:{principal.tenant_id}:{principal.user_id}", (person,)))
        if tenant in self._shared:
            demands.append((f"tenant:{principal.tenant_id}", (tenant,)))
        return demands

    async def check(self, principal: Principal, *, call: str, creates: bool) -> None:
        """Spend the device's budgets on this call, or raise RateLimited.

        `principal` is a verified device; `call` names the route ("POST /api/v1/recordings")
        for the warning and audit entry; `creates` spends the stricter budget too.
        """
        if creates:
            demands = self._demands(principal, (CALLS, CREATES), PERSON_CREATES, TENANT_CREATES)
        else:
            demands = [(principal.subject, (CALLS,))]
        await self._spend(principal, demands, call, "device.rate_limited")

    async def check_registration(self, principal: Principal, *, call: str) -> None:
        """Spend a person's and their tenant's registration budgets (a person registering a
        workstation by login), or raise RateLimited."""
        demands = self._demands(principal, (), PERSON_REGISTRATIONS, TENANT_REGISTRATIONS)
        if demands:
            await self._spend(principal, demands, call, "device.registration_limited")

    async def _spend(
        self,
        principal: Principal,
        demands: Sequence[tuple[str, Sequence[str]]],
        call: str,
        action: str,
    ) -> None:
        refusal = self.table.take_all(demands)
        if refusal is None:
            return
        retry_after = math.ceil(refusal.retry_after)
        if refusal.notice:
            await self._notice(principal, call, refusal, retry_after, action)
        raise RateLimited(
            f"{_WHOSE.get(refusal.budget.name, 'the caller')} is over its "
            f"{refusal.budget.name} budget; try again in {retry_after} s",
            retry_after=retry_after,
        )

    async def _notice(
        self, principal: Principal, call: str, refusal: Refusal, retry_after: int, action: str
    ) -> None:
        """One warning and one audit entry for this caller and window (never per call)."""
        details = {
            "budget": refusal.budget.name,
            "call": call,
            "refused": refusal.refused,
            "retry_after": retry_after,
        }
        who = f"{principal.kind} {principal.subject}"
        log.warning(
            "%s (tenant %s) is over its %s budget (%s): %d call(s) refused since the "
            "last notice; further refusals go unlogged for %.0f s",
            who, principal.tenant_id, refusal.budget.name, call, refusal.refused,
            self._notice_window,
            extra={"fields": {f"{principal.kind}_id": principal.subject, **details}},
        )
        try:
            async with self._db.transaction() as conn:
                await audit.record(
                    TenantScope(conn, principal.tenant_id),
                    at=self._clock(),
                    actor=f"{principal.kind}:{principal.subject}",
                    action=action,
                    target=principal.subject,
                    details=details,
                )
        except SQLAlchemyError as exc:
            # The refusal stands either way; the warning above has recorded it.
            log.warning(
                "%s %s: the rate-limit audit entry was not written: %s", principal.kind,
                principal.subject, type(exc).__name__,
            )
