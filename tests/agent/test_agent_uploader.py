"""The uploader: grant, PUT with exactly the grant's headers, completion, and its retries.

The broker and the bucket are the `fake_broker` fixture (tests/agent/conftest.py): a FAKE of
both, a real HTTP server on 127.0.0.1, because they are separate systems and these tests
inject failures (lost replies, 5xx, expired URLs, 412) that they would not produce on cue.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from agent.broker_client import BrokerClient
from agent.credentials import DeviceCredential
from agent.encode import Segment
from agent.errors import BrokerError, UploadError
from agent.retry import RetryPolicy
from agent.uploader import Uploader
from shared.errors import ErrorCode
from tests.agent.fakebroker import SIGNATURE, FakeBroker

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

BROKER_POLICY = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.01)
UPLOAD_POLICY = RetryPolicy(attempts=4, base_delay=1.0, max_delay=8.0)


def make_segment(seq: int = 0, data: bytes = b"\x00\x00\x00\x18ftypisom" + b"x" * 1000) -> Segment:
    return Segment(
        seq=seq, data=data, started_at=NOW, duration_ms=60_000, frames=60, width=64, height=48
    )


Setup = tuple[FakeBroker, Uploader, str, list[float]]


@pytest.fixture
def setup(fake_broker: FakeBroker) -> Iterator[Setup]:
    pair = fake_broker.new_device()
    client = BrokerClient(
        fake_broker.url,
        credential=DeviceCredential.from_token_pair(fake_broker.url, pair),
        policy=BROKER_POLICY,
        sleep=lambda s: None,
    )
    sleeps: list[float] = []
    uploader = Uploader(client, policy=UPLOAD_POLICY, sleep=sleeps.append, rng=random.Random(2))
    rid = client.start_recording(NOW)
    yield fake_broker, uploader, rid, sleeps
    uploader.close()
    client.close()


def key_of(rid: str, seq: int) -> str:
    return f"bucket/rec/t1/dev-1/{rid}/{seq:06d}.mp4"


def test_upload_puts_exactly_the_grant_headers_and_completes(setup: Setup) -> None:
    fake, uploader, rid, sleeps = setup
    seg = make_segment(3)
    result = uploader.upload(rid, seg)
    assert fake.objects[key_of(rid, 3)] == seg.data
    assert result.state == "verified"
    assert result.key_path == f"/s3/{key_of(rid, 3)}"
    assert (result.seq, result.size, result.attempts) == (3, seg.size, 1)
    assert sleeps == []
    (put,) = fake.requests("PUT")
    assert put.headers["if-none-match"] == "*"
    assert put.headers["content-length"] == str(seg.size)
    assert put.headers["x-amz-checksum-sha256"] == seg.sha256_b64()
    assert put.headers["content-type"] == "video/mp4"
    assert "authorization" not in put.headers  # the broker's token never goes to S3
    declared = fake.declared[(rid, 3)]
    assert (declared.size, declared.sha256, declared.md5) == (
        seg.size, seg.sha256_b64(), seg.md5_b64()
    )
    assert [r.path.rsplit("/", 1)[1] for r in fake.requests("POST", f"/api/v1/recordings/{rid}/")
            ] == ["upload", "complete"]


def test_lost_put_reply_then_412_goes_straight_to_complete(setup: Setup) -> None:
    fake, uploader, rid, sleeps = setup
    fake.fail("PUT", "/s3/", 0, drop=True)  # S3 stores the object, the reply is lost
    result = uploader.upload(rid, make_segment())
    assert [r.status for r in fake.requests("PUT")] == [200, 412]
    assert result.state == "verified"
    assert result.attempts == 2
    assert len(fake.grants) == 2  # a fresh grant for the second try, same key
    assert len(sleeps) == 1


def test_existing_object_with_other_bytes_is_a_permanent_error(setup: Setup) -> None:
    fake, uploader, rid, _ = setup
    fake.objects[key_of(rid, 0)] = b"someone else's bytes"
    with pytest.raises(UploadError, match=ErrorCode.SEGMENT_MISMATCH) as info:
        uploader.upload(rid, make_segment())
    assert info.value.seq == 0
    assert [r.status for r in fake.requests("PUT")] == [412]


@pytest.mark.parametrize(
    ("status", "code"),
    [(500, "InternalError"), (503, "SlowDown"), (403, "AccessDenied"), (400, "RequestTimeout")],
)
def test_transient_s3_failures_get_a_new_grant(setup: Setup, status: int, code: str) -> None:
    fake, uploader, rid, sleeps = setup
    body = f"<Error><Code>{code}</Code></Error>".encode()
    fake.fail("PUT", "/s3/", status, body=body, times=2)
    result = uploader.upload(rid, make_segment())
    assert result.attempts == 3
    assert [r.status for r in fake.requests("PUT")] == [status, status, 200]
    assert len(fake.grants) == 3
    assert 0.5 <= sleeps[0] <= 1.0
    assert 1.0 <= sleeps[1] <= 2.0


def test_connection_failure_is_transient(setup: Setup) -> None:
    fake, uploader, rid, _ = setup
    fake.fail("PUT", "/s3/", 0, no_reply=True)
    assert uploader.upload(rid, make_segment()).attempts == 2


def test_permanent_s3_refusal_is_not_retried(setup: Setup) -> None:
    fake, uploader, rid, sleeps = setup
    fake.fail("PUT", "/s3/", 400, body=b"<Error><Code>BadDigest</Code></Error>")
    with pytest.raises(UploadError, match="400 \\(BadDigest\\)"):
        uploader.upload(rid, make_segment())
    assert len(fake.requests("PUT")) == 1
    assert sleeps == []


def test_retries_are_bounded(setup: Setup) -> None:
    fake, uploader, rid, sleeps = setup
    fake.fail("PUT", "/s3/", 503, times=99)
    with pytest.raises(UploadError, match="gave up after 4 attempts"):
        uploader.upload(rid, make_segment())
    assert len(fake.requests("PUT")) == UPLOAD_POLICY.attempts
    assert len(sleeps) == UPLOAD_POLICY.attempts - 1


def test_segment_not_seen_by_the_broker_is_uploaded_again(setup: Setup) -> None:
    fake, uploader, rid, _ = setup
    fake.fail("POST", f"/api/v1/recordings/{rid}/segments/0/complete", 409,
              error=ErrorCode.SEGMENT_NOT_UPLOADED)
    result = uploader.upload(rid, make_segment())
    assert result.attempts == 2
    assert [r.status for r in fake.requests("PUT")] == [200, 412]


def test_broker_refusals_that_doom_the_recording_are_raised_as_such(setup: Setup) -> None:
    fake, uploader, rid, _ = setup
    fake.recordings[rid]["finished"] = True
    with pytest.raises(BrokerError) as info:
        uploader.upload(rid, make_segment())
    assert info.value.code == ErrorCode.RECORDING_FINISHED
    fake.revoked.add("dev-1")
    fake.refresh.clear()
    with pytest.raises(BrokerError, match="enroll this device again"):
        uploader.upload(rid, make_segment(1))


def test_other_broker_refusal_fails_the_segment(setup: Setup) -> None:
    fake, uploader, rid, _ = setup
    fake.fail("POST", f"/api/v1/recordings/{rid}/segments/0/upload", 400,
              error=ErrorCode.INVALID_FIELD)
    with pytest.raises(UploadError, match="upload grant refused"):
        uploader.upload(rid, make_segment())


def test_signature_never_reaches_logs_or_errors(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    fake, uploader, rid, _ = setup
    fake.fail("PUT", "/s3/", 500)
    fake.fail("PUT", "/s3/", 0, no_reply=True)
    fake.fail("PUT", "/s3/", 404, body=b"<Error><Code>NoSuchBucket</Code></Error>")
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.WARNING, logger="urllib3")  # as agent.logs.setup_logging does
    with pytest.raises(UploadError) as info:
        uploader.upload(rid, make_segment())
    assert "NoSuchBucket" in str(info.value)
    assert SIGNATURE not in caplog.text
    assert SIGNATURE not in str(info.value)
    assert f"/s3/{key_of(rid, 0)}" in caplog.text  # the path is logged


def test_failed_completion_after_a_good_put_only_completes_again(setup: Setup) -> None:
    fake, uploader, rid, sleeps = setup
    # more 503s than the broker client's own retries: the uploader's next try takes over
    fake.fail("POST", f"/api/v1/recordings/{rid}/segments/0/complete", 503,
              times=BROKER_POLICY.attempts, error=ErrorCode.STORAGE_UNAVAILABLE)
    result = uploader.upload(rid, make_segment())
    assert (result.state, result.attempts) == ("verified", 2)
    assert len(fake.requests("PUT")) == 1
    assert len(fake.grants) == 1  # no new grant: the broker refuses one for a verified segment
    assert len(sleeps) == 1
