"""The broker client: error parsing, retry policy, token refresh and rotation.

The broker side is the `fake_broker` fixture (tests/agent/conftest.py): a FAKE of the broker,
a real HTTP server on 127.0.0.1 speaking the wire contract, because the broker is a separate
service and these tests inject failures it would not produce on cue.
"""

from __future__ import annotations

import json
import random
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent.broker_client import (
    BEAT_RATE_LIMIT_TRIES,
    BEAT_RATE_LIMIT_WAIT,
    HEARTBEAT_PATH,
    BrokerClient,
    normalize_broker_url,
    parse_error_reply,
)
from agent.credentials import DeviceCredential
from agent.errors import BrokerError, BrokerUnreachable, ConfigError, CredentialError
from agent.retry import RetryPolicy, parse_retry_after
from shared.errors import ErrorCode
from shared.wire import Heartbeat, UploadRequest
from tests.agent.fakebroker import FakeBroker

FAST = RetryPolicy(attempts=4, base_delay=0.5, max_delay=4.0, max_retry_after=10.0)
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def device_client(
    fake_broker: FakeBroker, *, expires_in: int | None = None, **kwargs: Any
) -> tuple[
    BrokerClient, list[float], list[DeviceCredential]
]:
    pair = fake_broker.new_device()
    credential = DeviceCredential.from_token_pair(fake_broker.url, pair)
    if expires_in is not None:
        credential = DeviceCredential(
            broker_url=credential.broker_url,
            device_id=credential.device_id,
            refresh_token=credential.refresh_token,
            access_token=credential.access_token,
            access_expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
        )
    sleeps: list[float] = []
    saved: list[DeviceCredential] = []
    client = BrokerClient(
        fake_broker.url,
        credential=credential,
        on_rotate=kwargs.pop("on_rotate", saved.append),
        policy=FAST,
        sleep=sleeps.append,
        rng=random.Random(1),
        **kwargs,
    )
    return client, sleeps, saved


def upload_request() -> UploadRequest:
    return UploadRequest(
        size=10, sha256="A" * 43 + "=", md5="A" * 22 + "==", started_at=NOW, duration_ms=1000
    )


# -- error replies --------------------------------------------------------------------


def test_parse_error_reply_reads_the_json_error() -> None:
    body = json.dumps({"error": "invalid_field", "message": "size: must be an integer"})
    err = parse_error_reply(400, body.encode())
    assert (err.status, err.code, err.message) == (400, "invalid_field", "size: must be an integer")
    assert not err.transient
    assert "size: must be an integer" in str(err)


def test_parse_error_reply_without_json() -> None:
    err = parse_error_reply(502, b"<html>bad gateway</html>")
    assert (err.status, err.code, err.message) == (502, "http_502", "Bad Gateway")
    assert err.transient


def test_parse_error_reply_retry_after() -> None:
    err = parse_error_reply(429, b"{}", {"Retry-After": "12"})
    assert err.retry_after == 12
    assert err.transient


def test_enroll_and_error_reply(fake_broker: FakeBroker) -> None:
    client = BrokerClient(fake_broker.url, policy=FAST, sleep=lambda s: None)
    code = fake_broker.issue_code()
    pair = client.enroll(code, "ws-1")
    assert pair.device_id == "dev-1"
    sent = fake_broker.requests("POST", "/api/v1/devices/enroll")
    assert json.loads(sent[0].body) == {"code": code, "name": "ws-1"}
    assert "authorization" not in sent[0].headers
    with pytest.raises(BrokerError) as info:
        client.enroll(code, "ws-1")  # a code works once
    assert (info.value.status, info.value.code) == (401, ErrorCode.INVALID_ENROLLMENT_CODE)
    assert len(fake_broker.requests("POST", "/api/v1/devices/enroll")) == 2  # no retry on 4xx


def test_device_calls_carry_the_bearer_token(fake_broker: FakeBroker) -> None:
    client, _, _ = device_client(fake_broker)
    rid = client.start_recording(NOW)
    grant = client.request_upload(rid, 0, upload_request())
    assert grant.method == "PUT"
    assert grant.headers["If-None-Match"] == "*"
    client.finish_recording(rid)
    assert client.credential is not None
    for r in fake_broker.requests(prefix="/api/v1/recordings"):
        assert r.headers["authorization"] == f"Bearer {client.credential.access_token}"
    started = fake_broker.requests("POST", "/api/v1/recordings")[0]
    assert json.loads(started.body) == {"started_at": "2025-06-01T12:00:00Z"}
    assert json.loads(fake_broker.requests(prefix=f"/api/v1/recordings/{rid}/segments/0")[0].body)[
        "duration_ms"
    ] == 1000


def test_invalid_reply_is_reported(fake_broker: FakeBroker) -> None:
    client, _, _ = device_client(fake_broker)
    fake_broker.fail("POST", "/api/v1/recordings", 201, body=b'{"id": 1}')
    with pytest.raises(BrokerError, match="recording_id"):
        client.start_recording(NOW)


# -- retries --------------------------------------------------------------------------


def test_5xx_is_retried_with_bounded_backoff(fake_broker: FakeBroker) -> None:
    client, sleeps, _ = device_client(fake_broker)
    rid = client.start_recording(NOW)
    fake_broker.fail("POST", f"/api/v1/recordings/{rid}/finish", 500, times=2, error="internal")
    client.finish_recording(rid)
    assert len(fake_broker.requests("POST", f"/api/v1/recordings/{rid}/finish")) == 3
    assert len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5
    assert 0.5 <= sleeps[1] <= 1.0


def test_retries_stop_after_the_policy_attempts(fake_broker: FakeBroker) -> None:
    client, sleeps, _ = device_client(fake_broker)
    rid = client.start_recording(NOW)
    fake_broker.fail("POST", f"/api/v1/recordings/{rid}/finish", 502, times=99)
    with pytest.raises(BrokerError) as info:
        client.finish_recording(rid)
    assert info.value.status == 502
    assert len(fake_broker.requests("POST", f"/api/v1/recordings/{rid}/finish")) == FAST.attempts
    assert len(sleeps) == FAST.attempts - 1
    assert all(d <= FAST.max_delay for d in sleeps)


def test_non_idempotent_call_is_not_retried_on_500(fake_broker: FakeBroker) -> None:
    client, sleeps, _ = device_client(fake_broker)
    fake_broker.fail("POST", "/api/v1/recordings", 500, error="internal")
    with pytest.raises(BrokerError):
        client.start_recording(NOW)
    assert len(fake_broker.requests("POST", "/api/v1/recordings")) == 1
    assert sleeps == []


def test_non_idempotent_call_is_retried_on_503_and_429(fake_broker: FakeBroker) -> None:
    client, sleeps, _ = device_client(fake_broker)
    fake_broker.fail("POST", "/api/v1/recordings", 503, error="storage_unavailable")
    fake_broker.fail(
        "POST", "/api/v1/recordings", 429, error="rate_limited", headers={"Retry-After": "7"}
    )
    assert client.start_recording(NOW)
    assert len(fake_broker.requests("POST", "/api/v1/recordings")) == 3
    assert sleeps[1] == 7  # Retry-After honoured


def test_a_rate_limited_heartbeat_waits_its_turn_a_failed_one_waits_for_the_next(
    fake_broker: FakeBroker,
) -> None:
    client, sleeps, _ = device_client(fake_broker)
    beat = Heartbeat(state="recording", spool_bytes=0, spool_segments=0, errors=0, interval=60)
    limited = {"error": "rate_limited", "headers": {"Retry-After": "2"}}
    fake_broker.fail("POST", HEARTBEAT_PATH, 429, times=BEAT_RATE_LIMIT_TRIES - 1, **limited)
    assert client.heartbeat(beat) == {}
    assert len(fake_broker.heartbeats) == 1
    assert sleeps == [2] * (BEAT_RATE_LIMIT_TRIES - 1), "Retry-After honoured"

    sleeps.clear()
    fake_broker.fail("POST", HEARTBEAT_PATH, 429, times=BEAT_RATE_LIMIT_TRIES,
                     error="rate_limited", headers={"Retry-After": "600"})
    with pytest.raises(BrokerError) as info:
        client.heartbeat(beat)
    assert info.value.status == 429
    assert sleeps == [BEAT_RATE_LIMIT_WAIT] * (BEAT_RATE_LIMIT_TRIES - 1), "never long"

    sleeps.clear()
    fake_broker.fail("POST", HEARTBEAT_PATH, 503, error="storage_unavailable")
    with pytest.raises(BrokerError):
        client.heartbeat(beat)  # anything else: once, the next beat is the retry
    assert sleeps == []
    assert len(fake_broker.heartbeats) == 1


def test_retry_after_is_capped(fake_broker: FakeBroker) -> None:
    client, sleeps, _ = device_client(fake_broker)
    fake_broker.fail("POST", "/api/v1/recordings", 429, headers={"Retry-After": "86400"})
    client.start_recording(NOW)
    assert sleeps == [FAST.max_retry_after]


def test_lost_reply_is_retried_only_when_idempotent(fake_broker: FakeBroker) -> None:
    client, _, _ = device_client(fake_broker)
    rid = client.start_recording(NOW)
    fake_broker.fail("POST", f"/api/v1/recordings/{rid}/finish", 0, drop=True)
    client.finish_recording(rid)  # retried: finishing twice is harmless
    fake_broker.fail("POST", "/api/v1/recordings", 0, drop=True)
    with pytest.raises(BrokerUnreachable) as info:
        client.start_recording(NOW)  # not retried: it may have created a recording
    assert info.value.sent
    assert info.value.transient


def test_connection_refused_is_retried_then_reported() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps: list[float] = []
    client = BrokerClient(f"http://127.0.0.1:{port}", policy=FAST, sleep=sleeps.append)
    with pytest.raises(BrokerUnreachable) as info:
        client.enroll("code", "name")  # never sent, so even enroll may be retried
    assert not info.value.sent
    assert len(sleeps) == FAST.attempts - 1
    assert f"127.0.0.1:{port}" in str(info.value)


# -- tokens ---------------------------------------------------------------------------


def test_401_refreshes_once_persists_then_retries(fake_broker: FakeBroker) -> None:
    order: list[str] = []
    client, _, _ = device_client(
        fake_broker,
        on_rotate=lambda cred: order.append(f"saved {cred.refresh_token}"),
    )
    assert client.credential is not None
    old = client.credential
    fake_broker.access.clear()  # the broker forgot every access token (e.g. key rotation)
    rid = client.start_recording(NOW)
    new = client.credential
    assert new is not None
    assert new.refresh_token != old.refresh_token
    assert new.access_token != old.access_token
    assert order == [f"saved {new.refresh_token}"]
    calls = fake_broker.requests("POST", "/api/v1/recordings")
    assert [c.status for c in calls] == [401, 201]
    assert calls[1].headers["authorization"] == f"Bearer {new.access_token}"
    assert rid
    # the refresh request carried the old refresh token, and only once
    refreshes = fake_broker.requests("POST", "/api/v1/devices/token")
    assert [json.loads(r.body) for r in refreshes] == [{"refresh_token": old.refresh_token}]


def test_second_401_is_not_refreshed_again(fake_broker: FakeBroker) -> None:
    client, _, saved = device_client(fake_broker)
    fake_broker.fail("POST", "/api/v1/recordings", 401, times=2, error="invalid_token")
    with pytest.raises(BrokerError) as info:
        client.start_recording(NOW)
    assert info.value.status == 401
    assert len(fake_broker.requests("POST", "/api/v1/devices/token")) == 1
    assert len(saved) == 1


def test_access_token_close_to_expiry_is_refreshed_first(fake_broker: FakeBroker) -> None:
    client, _, saved = device_client(fake_broker, expires_in=30)
    client.start_recording(NOW)
    paths = [r.path for r in fake_broker.requests()]
    assert paths == ["/api/v1/devices/token", "/api/v1/recordings"]
    assert len(saved) == 1
    assert client.credential is not None
    assert not client.credential.expires_within(60)


def test_rejected_refresh_token_asks_to_enroll_again(fake_broker: FakeBroker) -> None:
    client, _, saved = device_client(fake_broker, expires_in=0)
    fake_broker.refresh.clear()  # the device was revoked
    with pytest.raises(BrokerError, match="enroll this device again") as info:
        client.start_recording(NOW)
    assert info.value.status == 401
    assert saved == []
    assert fake_broker.requests("POST", "/api/v1/recordings") == []


def test_refresh_is_never_replayed_after_a_lost_reply(fake_broker: FakeBroker) -> None:
    client, _, saved = device_client(fake_broker, expires_in=0)
    fake_broker.fail("POST", "/api/v1/devices/token", 0, drop=True)  # rotated, reply lost
    with pytest.raises(BrokerUnreachable):
        client.start_recording(NOW)
    assert len(fake_broker.requests("POST", "/api/v1/devices/token")) == 1
    assert saved == []


def test_failed_persist_blocks_use_of_the_new_token_until_saved(fake_broker: FakeBroker) -> None:
    attempts: list[DeviceCredential] = []

    def flaky_save(cred: DeviceCredential) -> None:
        attempts.append(cred)
        if len(attempts) == 1:
            raise CredentialError("disk full")

    client, _, _ = device_client(fake_broker, expires_in=0, on_rotate=flaky_save)
    with pytest.raises(CredentialError, match="disk full"):
        client.start_recording(NOW)
    assert fake_broker.requests("POST", "/api/v1/recordings") == []  # new token not used
    client.start_recording(NOW)  # saves the pending credential first, no second refresh
    assert len(fake_broker.requests("POST", "/api/v1/devices/token")) == 1
    assert len(attempts) == 2
    assert attempts[0] == attempts[1] == client.credential


def test_not_enrolled_client(fake_broker: FakeBroker) -> None:
    client = BrokerClient(fake_broker.url)
    with pytest.raises(CredentialError, match="not enrolled"):
        client.start_recording(NOW)


# -- policy and URLs ------------------------------------------------------------------


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    policy = RetryPolicy(attempts=10, base_delay=1.0, max_delay=8.0)
    assert [policy.ceiling(n) for n in range(1, 7)] == [1, 2, 4, 8, 8, 8]
    assert policy.ceiling(10_000) == 8
    rng = random.Random(0)
    for n in range(1, 10):
        delays = {policy.delay(n, rng) for _ in range(50)}
        assert all(policy.ceiling(n) / 2 <= d <= policy.ceiling(n) for d in delays)
        assert len(delays) > 1  # jittered
    assert policy.delay(3, rng, retry_after=2.5) == 2.5
    assert policy.delay(3, rng, retry_after=1e9) == policy.max_retry_after
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)


def test_parse_retry_after() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    assert parse_retry_after("30") == 30
    assert parse_retry_after("Wed, 01 Jan 2025 00:01:00 GMT", now=now) == 60
    assert parse_retry_after("Tue, 31 Dec 2024 00:00:00 GMT", now=now) == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_normalize_broker_url() -> None:
    assert normalize_broker_url("https://b.example/api/") == "https://b.example/api"
    assert normalize_broker_url("http://127.0.0.1:8080") == "http://127.0.0.1:8080"
    for bad in ("ftp://b.example", "b.example", "https://u:p@b.example", "https://b.example?x=1"):
        with pytest.raises(ConfigError):
            normalize_broker_url(bad)
