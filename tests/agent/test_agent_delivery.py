"""Delivery: in order, through the encrypted spool while uploads fail, nothing lost.

The broker and the bucket are the `fake_broker` fixture (a FAKE of both, a real HTTP server
on 127.0.0.1) because these tests script S3 failures that no real bucket gives on cue; the
real broker, real S3 API and real display are in tests/resilience.
"""

from __future__ import annotations

import queue
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.broker_client import BrokerClient
from agent.credentials import DeviceCredential
from agent.delivery import Delivery, gap_summary
from agent.encode import Segment
from agent.errors import BrokerError
from agent.retry import RetryPolicy
from agent.spool import Spool
from agent.uploader import Uploader
from shared.errors import ErrorCode
from tests.agent.fakebroker import FakeBroker

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
FAST = RetryPolicy(attempts=1, base_delay=0.01, max_delay=0.04)


def make_segment(seq: int, size: int = 2000) -> Segment:
    data = (b"\x00\x00\x00\x18ftypisom" + f"segment {seq} ".encode() * size)[:size]
    return Segment(
        seq=seq, data=data, started_at=NOW, duration_ms=1000, frames=2, width=64, height=48
    )


@dataclass
class Setup:
    fake: FakeBroker
    uploader: Uploader
    rid: str
    spool_dir: Path
    lines: list[str]
    spooled_files: list[set[str]]  # the spool's files, sampled at each report line

    def delivery(self, *, limit: int = 10**9, drain: float = 5.0) -> Delivery:
        spool = Spool(self.spool_dir, limit=limit)

        def report(line: str) -> None:
            self.lines.append(line)
            self.spooled_files.append({p.name for p in self.spool_dir.iterdir()})

        return Delivery(
            self.uploader, spool, self.rid, report=report, backoff=FAST, drain_seconds=drain,
            rng=random.Random(1),
        )

    def key(self, seq: int) -> str:
        return f"bucket/rec/t1/dev-1/{self.rid}/{seq:06d}.mp4"


@pytest.fixture
def setup(fake_broker: FakeBroker, tmp_path: Path) -> Iterator[Setup]:
    pair = fake_broker.new_device()
    client = BrokerClient(
        fake_broker.url,
        credential=DeviceCredential.from_token_pair(fake_broker.url, pair),
        policy=RetryPolicy(attempts=1, base_delay=0.01, max_delay=0.01),
        sleep=lambda s: None,
    )
    uploader = Uploader(client)
    rid = client.start_recording(NOW)
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir(mode=0o700)
    yield Setup(fake_broker, uploader, rid, spool_dir, [], [])
    uploader.close()
    client.close()


def feed(*segments: Segment) -> queue.Queue[Segment | None]:
    q: queue.Queue[Segment | None] = queue.Queue()
    for s in segments:
        q.put(s)
    q.put(None)
    return q


def test_segments_go_from_memory_while_uploads_succeed(setup: Setup) -> None:
    d = setup.delivery()
    d.run(feed(*(make_segment(i) for i in range(3))))
    assert [r.seq for r in d.outcome.uploaded] == [0, 1, 2]
    assert d.outcome.spooled == 0
    assert setup.spooled_files == [set(), set(), set()]  # the disk was never touched
    assert gap_summary(d.outcome) is None


def test_failing_uploads_spool_then_deliver_everything_in_order_once(setup: Setup) -> None:
    fake = setup.fake
    fake.fail("PUT", "/s3/", 0, no_reply=True, times=2)  # S3 unreachable...
    fake.fail("PUT", "/s3/", 503, body=b"<Error><Code>SlowDown</Code></Error>", times=3)
    segments = [make_segment(i) for i in range(5)]
    d = setup.delivery()
    d.run(feed(*segments))

    assert [r.seq for r in d.outcome.uploaded] == [0, 1, 2, 3, 4]
    assert d.outcome.spooled == 5  # the first failed, the others queued behind it
    assert gap_summary(d.outcome) is None
    for seg in segments:
        assert fake.objects[setup.key(seg.seq)] == seg.data
    assert fake.recordings[setup.rid]["verified"] == {0, 1, 2, 3, 4}
    # PUTs in order, each segment stored exactly once
    stored = [r.path.split("?")[0].rsplit("/", 1)[1] for r in fake.requests("PUT")
              if r.status == 200]
    assert stored == [f"{i:06d}.mp4" for i in range(5)]
    # each spooled file is deleted the moment its upload succeeded
    assert [len(files) for files in setup.spooled_files] == [4, 3, 2, 1, 0]
    assert list(setup.spool_dir.iterdir()) == []


def test_the_spool_limit_drops_the_oldest_and_reports_the_gap(setup: Setup) -> None:
    setup.fake.fail("PUT", "/s3/", 503, times=6)
    d = setup.delivery(limit=2 * (2000 + 32))  # room for two sealed segments
    d.run(feed(*(make_segment(i) for i in range(4))))
    assert d.outcome.dropped == [0, 1]
    assert [r.seq for r in d.outcome.uploaded] == [2, 3]
    assert any(line.startswith("segment 0 DROPPED: the spool reached its limit")
               for line in setup.lines)
    assert gap_summary(d.outcome) == (
        "2 segment(s) could not be uploaded (seq 0, 1: dropped at the spool limit)"
    )
    assert list(setup.spool_dir.iterdir()) == []


def test_what_is_unsent_when_the_drain_ends_is_reported_and_deleted(setup: Setup) -> None:
    setup.fake.fail("PUT", "/s3/", 503, times=10_000)
    d = setup.delivery(drain=0.3)
    d.run(feed(make_segment(0), make_segment(1)))
    assert d.outcome.uploaded == []
    assert d.outcome.unsent == [0, 1]
    assert "its encryption key lives only in this process's memory" in setup.lines[0]
    assert list(setup.spool_dir.iterdir()) == []
    assert gap_summary(d.outcome) == "2 segment(s) could not be uploaded (seq 0, 1: unsent at exit)"


def test_a_permanent_refusal_of_a_spooled_segment_moves_on(setup: Setup) -> None:
    fake = setup.fake
    fake.fail("PUT", "/s3/", 503)
    fake.fail("PUT", "/s3/", 400, body=b"<Error><Code>BadDigest</Code></Error>")
    d = setup.delivery()
    d.run(feed(make_segment(0), make_segment(1)))
    assert [e.seq for e in d.outcome.failed] == [0]
    assert [r.seq for r in d.outcome.uploaded] == [1]
    assert "segment 0 NOT uploaded" in setup.lines[0]


def test_a_fatal_refusal_is_raised_and_the_spool_is_emptied(setup: Setup) -> None:
    fake = setup.fake
    fake.fail("PUT", "/s3/", 503)
    d = setup.delivery()
    q: queue.Queue[Segment | None] = queue.Queue()
    q.put(make_segment(0))
    q.put(make_segment(1))
    fake.recordings[setup.rid]["finished"] = True
    with pytest.raises(BrokerError) as info:
        d.run(q)
    assert info.value.code == ErrorCode.RECORDING_FINISHED
    assert list(setup.spool_dir.iterdir()) == []
