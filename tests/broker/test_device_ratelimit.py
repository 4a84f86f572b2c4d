"""Per-device request budgets on the device API (`broker.devices.ratelimit`).

The bucket table is tested on its own with a clock the test moves (no sleeping). The rest
runs against one real broker of this module started with small budgets (the lowest the
settings accept) on its own SQLite database: 240 calls a minute (4/s) with a burst of 20,
and 30 creates an hour (one per 120 s) with a burst of 10.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import jwt
import pytest

from broker import admin
from broker.devices.ratelimit import CALLS, CREATES, BucketTable, Budget
from broker.errors import ConfigError
from broker.settings import Settings, generate_secrets
from broker.web.openapi import document
from broker.web.routes import ROUTES
from tests.conftest import sqlite_broker
from tests.identity.people import audit_entries, person
from tests.support.api import (
    Api,
    Device,
    Operator,
    Reply,
    Tenant,
    enroll,
    make_tenant,
    now_iso,
    snapshot,
    start_recording,
)
from tests.support.broker import BrokerProcess, base_env, broker_script
from tests.support.s3 import S3Endpoint

CALLS_PER_MINUTE, CALL_BURST = 240, 20
CREATES_PER_HOUR, CREATE_BURST = 30, 10
LIMITS = {
    "BUCKETREEL_DEVICE_CALLS_PER_MINUTE": str(CALLS_PER_MINUTE),
    "BUCKETREEL_DEVICE_CALL_BURST": str(CALL_BURST),
    "BUCKETREEL_DEVICE_CREATES_PER_HOUR": str(CREATES_PER_HOUR),
    "BUCKETREEL_DEVICE_CREATE_BURST": str(CREATE_BURST),
}
HEARTBEAT = "/api/v1/devices/heartbeat"
BEAT = {"state": "recording", "spool_bytes": 0, "spool_segments": 0, "errors": 0}
MAX_TRIES = 300  # far more calls than any budget here needs to run out


# -- the bucket table, with a clock the test moves ---------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


GENERAL = Budget.per_minute(CALLS, 240, 20)  # 4 calls/s
STRICT = Budget.per_hour(CREATES, 30, 10)  # one per 120 s


def table(clock: Clock, **kwargs: Any) -> BucketTable:
    return BucketTable([GENERAL, STRICT], clock=clock, **kwargs)


def served(buckets: BucketTable, key: str, names: tuple[str, ...], tries: int = 1000) -> int:
    """How many calls `key` gets served in a row, without the clock moving."""
    for count in range(tries):
        if buckets.take(key, names) is not None:
            return count
    raise AssertionError(f"{tries} calls in a row were served")


def test_a_new_key_gets_its_burst_then_waits_for_the_refill() -> None:
    clock = Clock()
    buckets = table(clock)

    assert served(buckets, "a", (CALLS,)) == 20
    refusal = buckets.take("a", (CALLS,))
    assert refusal is not None
    assert (refusal.budget, refusal.retry_after) == (GENERAL, pytest.approx(0.25))

    clock.now += refusal.retry_after  # exactly the wait it announced: served
    assert buckets.take("a", (CALLS,)) is None
    clock.now += 1.0  # 4 more calls
    assert served(buckets, "a", (CALLS,)) == 4
    clock.now += 3600.0  # a long quiet time refills to the burst, not beyond
    assert served(buckets, "a", (CALLS,)) == 20


def test_fractions_of_a_call_add_up() -> None:
    clock = Clock()
    buckets = table(clock)
    served(buckets, "a", (CALLS,))
    clock.now += 0.1
    assert buckets.take("a", (CALLS,)) is not None  # 0.4 of a call
    clock.now += 0.1
    refusal = buckets.take("a", (CALLS,))  # 0.8
    assert refusal is not None
    assert refusal.retry_after == pytest.approx(0.05)
    clock.now += 0.05
    assert buckets.take("a", (CALLS,)) is None


def test_the_strict_budget_trips_first_and_a_refusal_spends_nothing() -> None:
    clock = Clock()
    buckets = table(clock)

    assert served(buckets, "a", (CALLS, CREATES)) == 10
    refusal = buckets.take("a", (CALLS, CREATES))
    assert refusal is not None
    assert refusal.budget == STRICT
    assert refusal.retry_after == pytest.approx(120.0)
    for _ in range(50):  # refused creates spend no call of the general budget either
        assert buckets.take("a", (CALLS, CREATES)) is not None
    assert buckets.tokens("a", CALLS) == pytest.approx(10.0)
    assert served(buckets, "a", (CALLS,)) == 10, "plain calls are still served"


def test_the_budget_that_binds_longest_is_the_one_named() -> None:
    clock = Clock()
    buckets = table(clock)
    served(buckets, "a", (CALLS,))  # the general budget empty, the strict one full
    refusal = buckets.take("a", (CALLS, CREATES))
    assert refusal is not None
    assert refusal.budget == GENERAL
    served(buckets, "b", (CALLS, CREATES))  # the strict one empty, the general one not
    clock.now += 5.0
    served(buckets, "b", (CALLS,))  # and now both
    refusal = buckets.take("b", (CALLS, CREATES))
    assert refusal is not None
    assert refusal.budget == STRICT  # 115 s to wait, against 0.25 s for the other


def test_keys_are_independent() -> None:
    clock = Clock()
    buckets = table(clock)
    served(buckets, "a", (CALLS,))
    assert served(buckets, "b", (CALLS,)) == 20


def test_one_notice_per_window_counting_the_refusals_it_covers() -> None:
    clock = Clock()
    buckets = table(clock, notice_window=60.0)
    for _ in range(10):
        assert buckets.take("a", (CALLS, CREATES)) is None

    first = buckets.take("a", (CALLS, CREATES))
    assert first is not None
    assert (first.notice, first.refused) == (True, 1)
    for _ in range(7):
        clock.now += 5.0
        later = buckets.take("a", (CALLS, CREATES))
        assert later is not None
        assert (later.notice, later.refused) == (False, 0)
    clock.now += 25.0  # 60 s after the first notice
    again = buckets.take("a", (CALLS, CREATES))
    assert again is not None
    assert (again.notice, again.refused) == (True, 8)


def test_quiet_keys_are_dropped_once_full_again_and_busy_ones_kept() -> None:
    clock = Clock()
    buckets = table(clock)  # full again after at most 1200 s (the strict budget, from empty)
    served(buckets, "quiet", (CALLS, CREATES))
    clock.now += 600.0
    served(buckets, "busy", (CALLS,))
    clock.now += 599.0
    buckets.take("other", (CALLS,))
    assert all(k in buckets for k in ("quiet", "busy", "other"))

    clock.now += 1.0  # "quiet" has been quiet 1200 s: a new bucket would be the same
    buckets.take("other", (CALLS,))

    assert "quiet" not in buckets
    assert "busy" in buckets
    assert buckets.tokens("busy", CALLS) == pytest.approx(0.0)  # its state is still there
    assert buckets.evicted_early == 0


def test_the_cap_drops_the_least_recently_seen_key() -> None:
    clock = Clock()
    buckets = table(clock, max_keys=3)
    for key in ("a", "b", "c"):
        served(buckets, key, (CALLS,))
    buckets.take("a", (CALLS,))  # "b" is now the least recently seen

    buckets.take("d", (CALLS,))

    assert len(buckets) == 3
    assert "b" not in buckets
    assert all(k in buckets for k in ("a", "c", "d"))
    assert buckets.evicted_early == 1
    assert served(buckets, "b", (CALLS,)) == 20, "a dropped key starts afresh"
    assert len(buckets) == 3


def test_many_keys_stay_within_the_cap() -> None:
    clock = Clock()
    buckets = table(clock, max_keys=100)
    for n in range(10_000):
        buckets.take(f"device-{n}", (CALLS,))
        clock.now += 0.001
    assert len(buckets) == 100


@pytest.mark.parametrize(
    ("rate", "burst"), [(0.0, 10), (-1.0, 10), (1.0, 0)]
)
def test_a_budget_needs_a_positive_rate_and_burst(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="positive rate"):
        Budget("calls", rate, burst)


# -- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("BUCKETREEL_DEVICE_CALLS_PER_MINUTE", "239", "must be between 240 and 60000, not 239"),
        ("BUCKETREEL_DEVICE_CALLS_PER_MINUTE", "ten", "must be a whole number, not 'ten'"),
        ("BUCKETREEL_DEVICE_CALL_BURST", "19", "must be between 20 and 100000, not 19"),
        ("BUCKETREEL_DEVICE_CREATES_PER_HOUR", "0", "must be between 30 and 36000, not 0"),
        ("BUCKETREEL_DEVICE_CREATE_BURST", "9", "must be between 10 and 10000, not 9"),
        ("BUCKETREEL_DEVICE_CREATE_BURST", "1.5", "must be a whole number"),
    ],
)
def test_bad_budgets_are_refused_naming_the_variable(
    variable: str, value: str, said: str
) -> None:
    with pytest.raises(ConfigError, match=f"{variable} {said}"):
        Settings.from_env({**generate_secrets(), variable: value})


def test_the_defaults_and_the_lowest_values_accepted() -> None:
    defaults = Settings.from_env(generate_secrets())
    assert (defaults.device_calls_per_minute, defaults.device_call_burst) == (600, 600)
    assert (defaults.device_creates_per_hour, defaults.device_create_burst) == (120, 60)
    lowest = Settings.from_env({**generate_secrets(), **LIMITS})
    assert (lowest.device_calls_per_minute, lowest.device_call_burst) == (240, 20)
    assert (lowest.device_creates_per_hour, lowest.device_create_burst) == (30, 10)


def test_the_broker_refuses_to_start_with_a_bad_budget(tmp_path: Path) -> None:
    env = {
        **base_env(),
        **generate_secrets(),
        "BUCKETREEL_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'broker.db'}",
        "BUCKETREEL_DEVICE_CALLS_PER_MINUTE": "60",
    }
    result = subprocess.run(
        [str(broker_script()), "serve", "--port", "0"], capture_output=True, text=True, env=env,
        stdin=subprocess.DEVNULL, check=False, timeout=60,
    )
    assert result.returncode == 78, result.stderr
    assert "BUCKETREEL_DEVICE_CALLS_PER_MINUTE must be between 240 and 60000" in result.stderr
    assert not (tmp_path / "broker.db").exists(), "refused before touching the database"


# -- the route table and its OpenAPI document ---------------------------------------------------


def test_only_recording_starts_and_gap_reports_spend_the_strict_budget() -> None:
    creates = {(r.method, r.path) for r in ROUTES if r.creates}
    assert creates == {
        ("POST", "/api/v1/recordings"),
        ("POST", "/api/v1/recordings/{recording_id}/gaps"),
    }
    assert all(r.auth == "device" for r in ROUTES if r.creates)


def test_every_route_a_device_may_call_documents_its_429() -> None:
    paths = document(ROUTES)["paths"]
    for route in ROUTES:
        responses = paths[route.path][route.method.lower()]["responses"]
        if route.auth in ("device", "device_or_user"):
            limited = responses["429"]
            assert "Retry-After" in limited["headers"], route.path
            assert limited["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"
            }
        else:
            assert "429" not in responses, route.path


# -- a real broker with small budgets -----------------------------------------------------------


@pytest.fixture(scope="module")
def limited(session_tmp: Path) -> Iterator[BrokerProcess]:
    with ExitStack() as stack:
        yield sqlite_broker(
            stack, session_tmp, "device-ratelimit", "the broker with small device budgets",
            LIMITS,
        )


@pytest.fixture(scope="module")
def client(limited: BrokerProcess) -> Api:
    return Api(limited.url)


@pytest.fixture(scope="module")
def site(limited: BrokerProcess, s3_endpoint: S3Endpoint) -> Tenant:
    return make_tenant(limited, s3_endpoint)


def beat(api: Api, token: str) -> Reply:
    return api.call("POST", HEARTBEAT, BEAT, token=token)


def until_refused(call: Callable[[], Reply]) -> tuple[int, Reply]:
    """Call until the broker refuses; how many were served first, and the refusal."""
    for count in range(MAX_TRIES):
        reply = call()
        if reply.status != 200 and reply.status != 201:
            return count, reply
    raise AssertionError(f"{MAX_TRIES} calls in a row were served")


def assert_rate_limited(reply: Reply, budget: str) -> int:
    """The refusal's shape; returns its Retry-After."""
    assert reply.status == 429, reply.body
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.body["error"] == "rate_limited"
    assert f"over its {budget} budget" in reply.body["message"]
    retry_after = reply.headers["Retry-After"]
    assert retry_after.isdigit(), retry_after
    return int(retry_after)


def test_a_device_over_its_budget_gets_429_and_is_served_again_after_retry_after(
    limited: BrokerProcess, client: Api, site: Tenant
) -> None:
    admin = person(client, limited, site, "admin")
    device = enroll(client, limited, site)
    sibling = enroll(client, limited, site, device.user_id)  # the same person's other device
    recording_id = start_recording(client, device)
    own = f"/api/v1/recordings/{recording_id}"

    count, refused = until_refused(lambda: beat(client, device.access_token))

    assert count >= CALL_BURST - 1  # the recording start took one call
    assert assert_rate_limited(refused, CALLS) == 1  # a call comes back every 0.25 s
    # "device_or_user" with a device's token spends the device's budget too
    _, refused = until_refused(lambda: client.call("GET", own, token=device.access_token))
    retry_after = assert_rate_limited(refused, CALLS)
    assert beat(client, sibling.access_token).status == 200, "another device is not affected"
    assert client.call("GET", own, token=admin.access_token).status == 200, "nor a person"

    time.sleep(retry_after)
    assert beat(client, device.access_token).status == 200


def test_refused_calls_write_nothing_and_the_strict_budget_trips_first(
    limited: BrokerProcess, client: Api, site: Tenant
) -> None:
    device = enroll(client, limited, site)
    colleague = enroll(client, limited, site)
    started: list[str] = []

    def start() -> Reply:
        reply = client.call(
            "POST", "/api/v1/recordings", {"started_at": now_iso()}, token=device.access_token
        )
        if reply.status == 201:
            started.append(reply.body["recording_id"])
        return reply

    count, refused = until_refused(start)

    assert count == CREATE_BURST
    assert assert_rate_limited(refused, CREATES) > 60  # one create per 120 s
    before = snapshot(limited.database_url)
    gap = {"seqs": [0], "reason": "refused"}
    for _ in range(3):
        assert start().status == 429
        gaps = client.call(
            "POST", f"/api/v1/recordings/{started[-1]}/gaps", gap, token=device.access_token
        )
        assert_rate_limited(gaps, CREATES)
    assert snapshot(limited.database_url) == before, "a refused call writes nothing at all"
    assert len(started) == CREATE_BURST
    assert beat(client, device.access_token).status == 200, "the general budget is not out"
    assert start_recording(client, colleague), "another device of the tenant starts its own"

    noted = [
        e for e in audit_entries(limited, site.tenant_id) if e.action == "device.rate_limited"
        and e.target == device.device_id
    ]
    assert len(noted) == 1, "one audit entry per device and window, not one per refusal"
    assert noted[0].actor == f"device:{device.device_id}"
    assert noted[0].details["budget"] == CREATES
    assert noted[0].details["call"] == "POST /api/v1/recordings"
    warnings = [
        line for line in limited.log_tail(5000).splitlines()
        if device.device_id in line and "over its" in line
    ]
    assert len(warnings) == 1, warnings
    assert device.access_token not in limited.log_tail(5000)


def forged(device: Device) -> list[str]:
    """Tokens naming `device` that the broker must not accept."""
    header, claims, signature = device.access_token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    payload = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    other_key = jwt.encode(payload, "not the broker's key" * 3, algorithm="HS256",
                           headers={"kid": json.loads(base64.urlsafe_b64decode(
                               header + "=" * (-len(header) % 4)))["kid"]})
    unsigned = jwt.encode(payload, None, algorithm="none")
    return [f"{header}.{claims}.{flipped}", other_key, unsigned, "garbage"]


def test_an_invalid_token_never_spends_the_device_budget(
    limited: BrokerProcess, client: Api, site: Tenant
) -> None:
    device = enroll(client, limited, site)
    for token in forged(device):
        for _ in range(2 * CALL_BURST):
            assert beat(client, token).status == 401
    for _ in range(CALL_BURST):
        assert client.call("POST", HEARTBEAT, BEAT).status == 401  # no token at all

    for n in range(CALL_BURST):  # the whole burst is still there
        assert beat(client, device.access_token).status == 200, f"call {n + 1}"


def test_a_parallel_burst_gets_no_more_than_the_budget(
    limited: BrokerProcess, client: Api, site: Tenant
) -> None:
    device = enroll(client, limited, site)
    tries = 4 * CALL_BURST
    began = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda _: beat(Api(limited.url), device.access_token).status,
                                 range(tries)))
    elapsed = time.monotonic() - began

    assert set(statuses) <= {200, 429}
    refill = elapsed * CALLS_PER_MINUTE / 60
    assert CALL_BURST <= statuses.count(200) <= CALL_BURST + refill + 1


def test_the_budget_is_spent_before_the_database_is_asked(
    limited: BrokerProcess, client: Api, site: Tenant
) -> None:
    """A revoked device's access token still verifies for a few minutes: its calls are
    refused (401) by the database lookup, and they spend its budget first, so past the budget
    they are refused (429) without a query."""
    device = enroll(client, limited, site)
    Operator(limited).run(admin.revoke_device, tenant=site.tenant_id, device=device.device_id)
    statuses = [beat(client, device.access_token).status for _ in range(CALL_BURST + 1)]
    assert statuses == [401] * CALL_BURST + [429]
