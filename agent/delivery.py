"""Delivery: every encoded segment to the bucket, in order, none lost below the spool limit.

Runs in the recorder's upload thread. While uploads succeed, segments go from memory straight
to the bucket. When an attempt fails in a way a later one may cure, the segment is sealed to
the spool (agent.spool) and so is every segment that arrives behind it, so the order holds;
if the disk refuses the spool (full, read-only, a quota), the spool holds them sealed in RAM
instead, within its RAM budget, which the status and heartbeat error say;
the oldest spooled segment is retried with exponential backoff and jitter, for as long as it
takes, and the next one follows as soon as it is verified. A refusal no retry can pass (a 4xx
the bucket or broker will always give) is reported and that segment is given up, at once.

When the input closes (the recording stops), delivery goes on for at most `drain_seconds`.
What is still spooled then is reported as NOT uploaded and deleted: its key exists only in
this process's memory, so nobody could ever read it, this process included after exit.
"""

from __future__ import annotations

import logging
import queue
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.encode import Segment
from agent.errors import SpoolError, UploadError
from agent.logs import Report
from agent.retry import RetryPolicy
from agent.spool import Spool, SpoolEntry, human_size
from agent.status import StatusFile, now_iso
from agent.uploader import UploadDeferred, Uploader, UploadProgress, UploadResult

log = logging.getLogger(__name__)

Clock = Callable[[], float]

# Backoff between retries of a spooled segment; `attempts` is unused (retries never stop).
DEFAULT_BACKOFF = RetryPolicy(attempts=1, base_delay=1.0, max_delay=30.0)
DEFAULT_DRAIN_SECONDS = 60.0


@dataclass(slots=True, kw_only=True)
class DeliveryOutcome:
    uploaded: list[UploadResult] = field(default_factory=list)
    failed: list[UploadError] = field(default_factory=list)  # refused for good
    unsent: list[int] = field(default_factory=list)  # seqs still spooled at the end
    dropped: list[int] = field(default_factory=list)  # seqs dropped by the spool limit
    spooled: int = 0  # segments that went through the spool


class Delivery:
    """Delivers the segments of one recording; `run` consumes a queue closed by None."""

    def __init__(
        self,
        uploader: Uploader,
        spool: Spool,
        recording_id: str,
        *,
        report: Report,
        backoff: RetryPolicy = DEFAULT_BACKOFF,
        drain_seconds: float = DEFAULT_DRAIN_SECONDS,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
        status: StatusFile | None = None,
    ) -> None:
        self.uploader = uploader
        self.spool = spool
        self.recording_id = recording_id
        self.outcome = DeliveryOutcome()
        self._report = report
        self._backoff = backoff
        self._drain_seconds = drain_seconds
        self._clock = clock
        self._rng = rng or random.Random()
        self._progress: dict[int, UploadProgress] = {}
        self._retry = 0  # failed tries of the spool's oldest entry so far
        self._next_try = 0.0
        # the spool outlives one recording: only what happens from now on is this delivery's
        self._dropped_seen = len(spool.dropped)
        self._fallbacks_seen = spool.fallbacks
        self._status = status

    def _publish(self, **fields: object) -> None:
        if self._status is not None:
            outcome = self.outcome
            gaps = sorted(outcome.dropped + outcome.unsent + [e.seq for e in outcome.failed])
            self._status.update(
                spool_bytes=self.spool.size, spool_segments=len(self.spool),
                spool_memory_bytes=self.spool.memory_size,
                spool_memory_segments=self.spool.memory_segments,
                uploaded=len(outcome.uploaded), gaps=gaps, **fields,
            )

    def _publish_error(self, message: str) -> None:
        if self._status is not None:
            self._status.error(message)
        self._publish()

    def run(self, segments: queue.Queue[Segment | None]) -> None:
        """Deliver until the queue yields None and the backlog is empty or the drain ends.

        A fatal error (the device revoked, the recording closed, ...) is raised at once;
        the caller drains the queue. Whatever is still spooled when this returns or raises is
        reported and deleted.
        """
        try:
            self._run(segments)
        finally:
            self._give_up_the_rest()

    def _run(self, segments: queue.Queue[Segment | None]) -> None:
        closed = False
        drain_until = 0.0
        while True:
            head = self.spool.oldest()
            if head is None:
                if closed:
                    return
                segment = segments.get()
                if segment is None:
                    closed = True
                    continue
                self._from_memory(segment)
                continue
            now = self._clock()
            if closed and now >= drain_until:
                return
            if now >= self._next_try:
                self._from_spool(head)
                continue
            wait = self._next_try - now
            if closed:
                time.sleep(min(wait, drain_until - now))
                continue
            try:
                segment = segments.get(timeout=wait)
            except queue.Empty:
                continue
            if segment is None:
                closed = True
                drain_until = self._clock() + self._drain_seconds
                if self.spool.oldest() is not None:
                    log.warning(
                        "stopping: %d segment(s) wait in the spool; trying for %.0f s more",
                        len(self.spool), self._drain_seconds,
                    )
                continue
            self._to_spool(segment)  # behind the backlog, in order

    # -- one segment ----------------------------------------------------------------------

    def _from_memory(self, segment: Segment) -> None:
        progress = self._progress.setdefault(segment.seq, UploadProgress())
        try:
            result = self.uploader.try_once(self.recording_id, segment, progress)
        except UploadDeferred as again:
            log.warning(
                "segment %d: %s; keeping it in the encrypted spool and retrying",
                segment.seq, again.reason,
            )
            self._retry = 0
            self._to_spool(segment)
            self._schedule(again.retry_after)
            self._publish_error(f"segment {segment.seq}: {again.reason}{self._ram_note()}")
        except UploadError as exc:
            self._refused(exc)
        else:
            self._uploaded(result, segment)

    def _from_spool(self, entry: SpoolEntry) -> None:
        try:
            segment = self.spool.load(entry)
        except SpoolError as exc:
            # cannot happen short of someone tampering with our files: say so, move on
            self.spool.remove(entry)
            self._refused(UploadError(entry.seq, f"lost from the spool: {exc}"))
            return
        progress = self._progress.setdefault(entry.seq, UploadProgress())
        try:
            result = self.uploader.try_once(self.recording_id, segment, progress)
        except UploadDeferred as again:
            self._schedule(again.retry_after)
            self._publish_error(f"segment {entry.seq}: {again.reason}{self._ram_note()}")
            log.warning(
                "segment %d: %s; retry in %.1f s (%d segment(s), %s in the spool%s)",
                entry.seq, again.reason, max(0.0, self._next_try - self._clock()),
                len(self.spool), human_size(self.spool.size), self._ram_note(),
            )
        except UploadError as exc:
            self.spool.remove(entry)
            self._refused(exc)
        else:
            self.spool.remove(entry)  # deleted the moment the bucket has it
            self._retry = 0
            self._next_try = 0.0
            self._uploaded(result, segment)

    def _to_spool(self, segment: Segment) -> None:
        head = self.spool.oldest()
        try:
            entry = self.spool.put(self.recording_id, segment)
        except SpoolError as exc:
            # the disk refuses (full, read-only) and the segment alone exceeds the spool's RAM
            # budget: it is lost, loudly
            self._refused(UploadError(segment.seq, f"could not be spooled: {exc}"))
            return
        if entry is not None:
            self.outcome.spooled += 1
        self._note_fallback()
        self._note_drops(head)
        self._publish()

    def _note_fallback(self) -> None:
        """Say so in the status (and so the heartbeat) when the disk begins refusing."""
        if self.spool.fallbacks == self._fallbacks_seen:
            return
        self._fallbacks_seen = self.spool.fallbacks
        self._publish_error(
            f"the spool directory refuses writes ({self.spool.memory_reason}): segments are "
            "held in RAM until uploads resume or the budget of "
            f"{human_size(self.spool.memory_limit)} is reached (then the oldest are dropped)"
        )

    def _ram_note(self) -> str:
        """What the spool holds in RAM, for the error messages; "" when nothing."""
        count = self.spool.memory_segments
        if not count:
            return ""
        reason = self.spool.memory_reason
        return (
            f"; {count} segment(s) ({human_size(self.spool.memory_size)}) held in RAM"
            + (f" as the disk refuses the spool ({reason})" if reason else "")
            + f", budget {human_size(self.spool.memory_limit)}"
        )

    def _schedule(self, retry_after: float | None) -> None:
        self._retry += 1
        delay = self._backoff.delay(self._retry, self._rng, retry_after=retry_after)
        self._next_try = self._clock() + delay

    def _note_drops(self, head: SpoolEntry | None) -> None:
        """Report what the spool dropped since the last call; `head` was its oldest entry."""
        new = self.spool.dropped[self._dropped_seen :]
        self._dropped_seen = len(self.spool.dropped)
        in_memory = False
        for recording_id, seq in new:
            if recording_id == self.recording_id:
                self.outcome.dropped.append(seq)
                self._progress.pop(seq, None)
            if (recording_id, seq) in self.spool.dropped_in_memory:
                in_memory = True
                reason = "spool_memory_limit"
                why = (
                    f"the spool's RAM budget of {human_size(self.spool.memory_limit)} was "
                    "reached while the disk refuses the spool"
                )
            else:
                reason = "spool_limit"
                why = f"the spool reached its limit of {human_size(self.spool.limit)}"
            self._report(
                f"segment {seq} DROPPED: {why} (policy: drop the oldest); gap in recording "
                f"{recording_id}",
                event="segment_dropped", recording_id=recording_id, seq=seq, reason=reason,
            )
        if new:
            if self.spool.oldest() is not head:
                self._retry = 0  # a new oldest entry: start its backoff afresh
            seqs = ", ".join(str(seq) for _, seq in new)
            budget = "RAM budget" if in_memory else "limit"
            self._publish_error(f"spool {budget} reached: dropped seq {seqs}")

    # -- outcomes -------------------------------------------------------------------------

    def _uploaded(self, result: UploadResult, segment: Segment) -> None:
        self._progress.pop(segment.seq, None)
        self.outcome.uploaded.append(result)
        self._publish(last_upload={"at": now_iso(), "seq": result.seq, "size": result.size})
        self._report(
            f"segment {result.seq} uploaded: {human_size(result.size)}, "
            f"{result.duration_ms / 1000:.1f} s, {segment.frames} frame(s), "
            f"{segment.width}x{segment.height} -> {result.key_path}",
            event="segment_uploaded", recording_id=self.recording_id, seq=result.seq,
            size=result.size, duration_ms=result.duration_ms, frames=segment.frames,
            width=segment.width, height=segment.height, key=result.key_path,
        )

    def _refused(self, exc: UploadError) -> None:
        self._progress.pop(exc.seq, None)
        self.outcome.failed.append(exc)
        self._publish_error(str(exc))
        log.error("%s", exc)
        self._report(f"segment {exc.seq} NOT uploaded: {exc}", event="segment_failed",
                     recording_id=self.recording_id, seq=exc.seq, error=str(exc))

    def _give_up_the_rest(self) -> None:
        gone = self.spool.clear()
        for entry in gone:
            self.outcome.unsent.append(entry.seq)
            self._report(
                f"segment {entry.seq} NOT uploaded: still in the spool when the agent stopped; "
                "its encryption key lives only in this process's memory, so the sealed copy "
                "is unreadable from now on and has been deleted (a gap in recording "
                f"{entry.recording_id})",
                event="segment_unsent", recording_id=entry.recording_id, seq=entry.seq,
            )
        if gone:
            self._publish_error(f"{len(gone)} segment(s) unsent at exit")


def gap_summary(outcome: DeliveryOutcome) -> str | None:
    """Which segments the recording lacks and why, or None when none is missing."""
    parts = []
    for seqs, why in (
        ([e.seq for e in outcome.failed], "refused"),
        (outcome.dropped, "dropped at the spool limit"),
        (outcome.unsent, "unsent at exit"),
    ):
        if seqs:
            parts.append(f"seq {', '.join(map(str, seqs))}: {why}")
    if not parts:
        return None
    missing = len(outcome.failed) + len(outcome.dropped) + len(outcome.unsent)
    return f"{missing} segment(s) could not be uploaded ({'; '.join(parts)})"
