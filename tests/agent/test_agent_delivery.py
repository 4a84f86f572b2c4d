"""Delivery: in order, through the encrypted spool while uploads fail, nothing lost, even
when the disk refuses the spool (then it holds the sealed segments in RAM).

The broker and the bucket are the `fake_broker` fixture (a FAKE of both, a real HTTP server
on 127.0.0.1) because these tests script S3 failures that no real bucket gives on cue; the
real broker, real S3 API and real display are in tests/resilience.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
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
from agent.status import StatusFile
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
    events: list[dict[str, object]] = field(default_factory=list)  # each report's event, fields

    def delivery(
        self,
        *,
        limit: int = 10**9,
        memory_limit: int = 10**9,
        drain: float = 5.0,
        status: StatusFile | None = None,
    ) -> Delivery:
        spool = Spool(self.spool_dir, limit=limit, memory_limit=memory_limit)

        def report(line: str, *, event: str, **fields: object) -> None:
            self.lines.append(line)
            self.events.append({"event": event, **fields})
            self.spooled_files.append(
                {p.name for p in self.spool_dir.iterdir()} if self.spool_dir.is_dir() else set()
            )

        return Delivery(
            self.uploader, spool, self.rid, report=report, backoff=FAST, drain_seconds=drain,
            rng=random.Random(1), status=status,
        )

    def refuse_the_disk(self) -> None:
        """Every spool write fails for real (ENOTDIR, root or not): a file where the
        spool directory was."""
        self.spool_dir.rmdir()
        self.spool_dir.write_bytes(NOT_A_DIR)

    def accept_the_disk(self) -> None:
        self.spool_dir.unlink()
        self.spool_dir.mkdir(mode=0o700)

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


NOT_A_DIR = b"a regular file where the spool directory was"


class StatusLog(StatusFile):
    """The real status file, and every error message it was given."""

    def __init__(self, config_dir: Path) -> None:
        super().__init__(config_dir)
        self.errors: list[str] = []

    def error(self, message: str) -> None:
        self.errors.append(message)
        super().error(message)


def files_under(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def feed(*segments: Segment) -> queue.Queue[Segment | None]:
    q: queue.Queue[Segment | None] = queue.Queue()
    for s in segments:
        q.put(s)
    q.put(None)
    return q


def assert_delivered_in_order_once(
    d: Delivery, fake: FakeBroker, setup: Setup, segments: list[Segment]
) -> None:
    """Every segment went through the spool and arrived, in order, stored exactly once."""
    seqs = [seg.seq for seg in segments]
    assert [r.seq for r in d.outcome.uploaded] == seqs
    assert d.outcome.spooled == len(segments)
    assert gap_summary(d.outcome) is None
    for seg in segments:
        assert fake.objects[setup.key(seg.seq)] == seg.data
    assert fake.recordings[setup.rid]["verified"] == set(seqs)
    stored = [r.path.split("?")[0].rsplit("/", 1)[1] for r in fake.requests("PUT")
              if r.status == 200]
    assert stored == [f"{seq:06d}.mp4" for seq in seqs]


def test_segments_go_from_memory_while_uploads_succeed(setup: Setup) -> None:
    d = setup.delivery()
    d.run(feed(*(make_segment(i) for i in range(3))))
    assert [r.seq for r in d.outcome.uploaded] == [0, 1, 2]
    assert [(e["event"], e["seq"], e["size"], e["recording_id"]) for e in setup.events] == [
        ("segment_uploaded", i, 2000, setup.rid) for i in range(3)
    ], "each report says what happened, for machines too"
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

    # the first failed, the others queued behind it; PUTs in order, each stored exactly once
    assert_delivered_in_order_once(d, fake, setup, segments)
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
    assert [(e["seq"], e["reason"]) for e in setup.events if e["event"] == "segment_dropped"] == [
        (0, "spool_limit"), (1, "spool_limit")]
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


# -- the disk refuses the spool: sealed segments in RAM -----------------------------------


def test_uploads_and_the_disk_failing_keep_segments_in_ram_none_lost_none_twice(
    setup: Setup, tmp_path: Path
) -> None:
    fake = setup.fake
    fake.fail("PUT", "/s3/", 0, no_reply=True, times=2)  # S3 unreachable...
    fake.fail("PUT", "/s3/", 503, body=b"<Error><Code>SlowDown</Code></Error>", times=3)
    setup.refuse_the_disk()
    status = StatusLog(tmp_path)
    segments = [make_segment(i) for i in range(5)]
    d = setup.delivery(status=status)
    d.run(feed(*segments))

    # the first failed, the others queued behind it; PUTs in order, each stored exactly once
    assert_delivered_in_order_once(d, fake, setup, segments)
    # the status (and so the heartbeat) says where the segments are, and why
    assert status.errors[0] == (
        "the spool directory refuses writes (Not a directory): segments are held in RAM "
        "until uploads resume or the budget of 953.7 MiB is reached (then the oldest are "
        "dropped)"
    )
    assert any(e.endswith("1 segment(s) (2.0 KiB) held in RAM as the disk refuses the spool "
                          "(Not a directory), budget 953.7 MiB") for e in status.errors)
    snapshot = status.snapshot()
    assert (snapshot["spool_memory_segments"], snapshot["spool_memory_bytes"]) == (0, 0)
    assert (snapshot["spool_segments"], snapshot["spool_bytes"]) == (0, 0)
    # no recording byte, sealed or not, ever reached the disk
    assert set(files_under(tmp_path)) == {setup.spool_dir, status.path}
    assert setup.spool_dir.read_bytes() == NOT_A_DIR


def test_the_ram_budget_drops_the_oldest_and_reports_the_gap(setup: Setup) -> None:
    setup.fake.fail("PUT", "/s3/", 503, times=6)
    setup.refuse_the_disk()
    d = setup.delivery(memory_limit=2 * (2000 + 32))  # room in RAM for two sealed segments
    d.run(feed(*(make_segment(i) for i in range(4))))
    assert d.outcome.dropped == [0, 1]
    assert [r.seq for r in d.outcome.uploaded] == [2, 3]
    assert (
        "segment 0 DROPPED: the spool's RAM budget of 4.0 KiB was reached while the disk "
        f"refuses the spool (policy: drop the oldest); gap in recording {setup.rid}"
    ) in setup.lines
    assert gap_summary(d.outcome) == (
        "2 segment(s) could not be uploaded (seq 0, 1: dropped at the spool limit)"
    )
    assert len(d.spool) == 0


def test_a_segment_larger_than_the_ram_budget_is_refused_loudly(setup: Setup) -> None:
    setup.fake.fail("PUT", "/s3/", 503)
    setup.refuse_the_disk()
    d = setup.delivery(memory_limit=1000)
    d.run(feed(make_segment(0), make_segment(1)))
    assert [e.seq for e in d.outcome.failed] == [0]
    assert "could not be spooled: cannot write to the spool (Not a directory)" in str(
        d.outcome.failed[0]
    )
    assert setup.lines[0].startswith("segment 0 NOT uploaded: segment 0: could not be spooled")
    assert "exceeds the spool's RAM budget of 1000 bytes" in setup.lines[0]
    assert [r.seq for r in d.outcome.uploaded] == [1]


def test_segments_in_ram_unsent_when_the_drain_ends_are_reported_and_dropped(
    setup: Setup, tmp_path: Path
) -> None:
    setup.fake.fail("PUT", "/s3/", 503, times=10_000)
    setup.refuse_the_disk()
    status = StatusLog(tmp_path)
    d = setup.delivery(drain=0.3, status=status)
    d.run(feed(make_segment(0), make_segment(1)))
    assert d.outcome.uploaded == []
    assert d.outcome.unsent == [0, 1]
    assert "its encryption key lives only in this process's memory" in setup.lines[0]
    assert (len(d.spool), d.spool.size, d.spool.memory_size) == (0, 0, 0)
    assert status.snapshot()["spool_memory_segments"] == 0
    assert status.errors[-1] == "2 segment(s) unsent at exit"
    assert gap_summary(d.outcome) == "2 segment(s) could not be uploaded (seq 0, 1: unsent at exit)"
    assert set(files_under(tmp_path)) == {setup.spool_dir, status.path}


def test_when_the_disk_works_again_new_segments_are_sealed_to_it(setup: Setup) -> None:
    fake = setup.fake
    fake.fail("PUT", "/s3/", 503, times=10_000)
    setup.refuse_the_disk()
    d = setup.delivery()
    segments = [make_segment(i) for i in range(4)]
    q: queue.Queue[Segment | None] = queue.Queue()
    held: list[tuple[int, bool]] = []

    def until_spooled(count: int) -> None:
        deadline = time.monotonic() + 10
        while len(d.spool) < count and time.monotonic() < deadline:
            time.sleep(0.005)

    def produce() -> None:
        q.put(segments[0])
        q.put(segments[1])
        until_spooled(2)
        setup.accept_the_disk()
        q.put(segments[2])
        q.put(segments[3])
        until_spooled(4)
        held.extend((e.seq, e.in_memory) for e in d.spool.entries())
        with fake.lock:
            fake.script.clear()  # uploads succeed again
        q.put(None)

    producer = threading.Thread(target=produce)
    producer.start()
    d.run(q)
    producer.join()

    assert held == [(0, True), (1, True), (2, False), (3, False)]
    assert [r.seq for r in d.outcome.uploaded] == [0, 1, 2, 3]
    stored = [r.path.split("?")[0].rsplit("/", 1)[1] for r in fake.requests("PUT")
              if r.status == 200]
    assert stored == [f"{i:06d}.mp4" for i in range(4)]
    assert gap_summary(d.outcome) is None
    # the files of 2 and 3 are deleted as each is verified
    assert [len(files) for files in setup.spooled_files] == [2, 2, 1, 0]
