"""The `run` pipeline: capture -> encode -> upload, three threads joined by bounded queues.

- The capture thread grabs frames on the tick schedule and never waits for the encoder: when
  the frame queue is full the frame is dropped (and counted).
- The encoder thread cuts frames into segments (in memory) and hands them to the uploader.
- The upload thread delivers segments one at a time, in order (agent.delivery): from memory
  while uploads succeed, through the encrypted spool while they fail, retried until they pass.

Stopping (the `stop` event, set by a signal handler, by `duration` running out, or by a fatal
error) ends capture; the encoder then closes the last, partial segment, the upload thread
delivers everything queued or spooled (for at most `drain_seconds` more), and the recording
is finished at the broker.

Pausing (agent.idle): when the user has been idle for longer than `idle_seconds`, or the
screen is locked, capture stops: the segment in progress is closed and uploaded, and nothing
is captured until input returns (or the screen is unlocked). Each pause is reported to the
broker as a gap with its reason (`idle`, `locked`) and time range; a pause is not a failure.

A blocked capture (agent.health: the frames carry no picture for `blocked_seconds`) is a
pause too: the segment in progress is closed and uploaded, and while it lasts frames are
still grabbed, to notice the picture's return, but none is encoded. It is said loudly (a
warning, `status`, the heartbeat's `capture`) and reported as a gap `capture_blocked` with
its time range; recording resumes by itself in a new segment when the picture returns.

The broker's policy (agent.heartbeat, agent.config.with_policy) may change fps, segment length
and idle timeout while recording. The capture thread asks for the wanted settings at each
frame: a new idle timeout holds from the next check; a new fps or segment length from the
next segment, whose first frame ends the capture schedule (a `Cut` carrying the new settings
tells the encoder to close the segment and cut the next ones anew) and starts a new one.

A segment that is refused for good, dropped at the spool limit or still unsent at exit is
reported at once and the recording goes on; at the end the run fails naming every gap. A
fatal error (display lost, device revoked, recording closed) stops the whole run and is
raised once the threads have wound down.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast

from agent.capture import Frame, ScreenCapture, probe_monitor
from agent.cpu import STAGES
from agent.custody import CustodyChain, DeviceKey, sign_gap
from agent.delivery import DEFAULT_DRAIN_SECONDS, Delivery, DeliveryOutcome, gap_summary
from agent.encode import DEFAULT_QUALITY, Segment, Segmenter, encoder_options
from agent.errors import AgentError
from agent.health import DEFAULT_BLOCKED_SECONDS, CaptureHealth, describe
from agent.idle import DEFAULT_IDLE_SECONDS, IdleWatch
from agent.logs import Report, report
from agent.platform import screen
from agent.spool import Spool
from agent.status import StatusFile
from agent.uploader import Uploader
from shared.wire import GapReason, GapReport

log = logging.getLogger(__name__)



@dataclass(frozen=True, slots=True, kw_only=True)
class RecorderConfig:
    fps: float = 1.0
    segment_seconds: float = 60.0
    duration: float | None = None  # seconds of capture; None = until stopped
    monitor: int = 1  # 1 = first monitor, 0 = all monitors as one canvas
    quality: str = DEFAULT_QUALITY  # a shared.wire.QualityLevel (agent.encode.QUALITY)
    crf: int | None = None  # the agent's own CRF for an H.264 level (None: the level's)
    frame_queue: int = 8  # frames waiting for the encoder before capture drops frames
    segment_queue: int = 32  # encoded segments waiting for upload (held in RAM)
    drain_seconds: float = DEFAULT_DRAIN_SECONDS  # at stop, how long to wait for uploads
    idle_seconds: float = DEFAULT_IDLE_SECONDS  # pause after this long without input; 0: never
    # declare the capture blocked after this long without a picture (agent.health); 0: never
    blocked_seconds: float = DEFAULT_BLOCKED_SECONDS


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveSettings:
    """The settings the broker's policy may change while recording."""

    fps: float
    segment_seconds: float
    idle_seconds: float
    quality: str = DEFAULT_QUALITY

    def describe(self) -> str:
        idle = f"pause after {self.idle_seconds:g} s idle" if self.idle_seconds else "no idle pause"
        return (f"{self.fps:g} fps, segments of {self.segment_seconds:g} s, {idle}, "
                f"quality {self.quality}")

    def schedule(self) -> tuple[float, float, str]:
        """What applies from a segment's start only: fps, segment length, quality level."""
        return self.fps, self.segment_seconds, self.quality


@dataclass(frozen=True, slots=True)
class Cut:
    """In the frame queue: close the segment in progress (a pause starts); with `settings`,
    cut the segments after it with their fps and length (the broker's policy changed)."""

    settings: LiveSettings | None = None


RETIME = "retime"  # the capture schedule ends: new settings from the next segment
CAPTURE_BLOCKED = "capture_blocked"  # the frames carry no picture (agent.health)


@dataclass(frozen=True, slots=True, kw_only=True)
class Pause:
    reason: str  # "idle", "locked" or "capture_blocked"
    started_at: datetime
    ended_at: datetime | None = None


@dataclass(slots=True, kw_only=True)
class RunSummary:
    recording_id: str
    delivery: DeliveryOutcome = field(default_factory=DeliveryOutcome)
    frames: int = 0  # frames captured
    unchanged_frames: int = 0  # captured, identical to the previous one: not encoded
    dropped_frames: int = 0  # captured but dropped because the encoder lagged
    skipped_ticks: int = 0  # ticks not captured because capture ran late
    pauses: list[Pause] = field(default_factory=list)  # idle, locked or blocked, in order
    blocked_frames: int = 0  # captured while the capture was blocked: not encoded


class Recorder:
    """Records one monitor into one recording at the broker."""

    def __init__(
        self,
        config: RecorderConfig,
        uploader: Uploader,
        spool: Spool,
        *,
        capture: ScreenCapture | None = None,
        report: Report = report,
        status: StatusFile | None = None,
        key: DeviceKey | None = None,
        idle: IdleWatch | None = None,
        health: CaptureHealth | None = None,
        live_settings: Callable[[], LiveSettings] | None = None,
    ) -> None:
        """`live_settings` answers the settings wanted now (the broker's policy applied);
        without it, `config`'s hold for the whole run."""
        self.config = config
        self.key = key  # signs each segment's chain-of-custody record, when enrolled with one
        self._chain: CustodyChain | None = None
        self.uploader = uploader
        self.broker = uploader.broker
        self.spool = spool
        self.status = status
        self.capture = capture or ScreenCapture(
            monitor=config.monitor,
            fps=config.fps,
            # read the monitor layout again at each segment: a display change mid-recording
            # then starts a new segment at the new size instead of failing
            refresh_ticks=max(1, round(config.segment_seconds * config.fps)),
        )
        self.idle = idle if idle is not None else IdleWatch(config.idle_seconds)
        self.health = health if health is not None else CaptureHealth(
            config.blocked_seconds, input_age=self.idle.input_age
        )
        self._live_settings = live_settings
        # what capture and encoder run with (fps, segment length), and the last settings wanted
        self._settings = LiveSettings(
            fps=config.fps, segment_seconds=config.segment_seconds,
            idle_seconds=config.idle_seconds, quality=config.quality,
        )
        self._wanted = self._settings
        self._report = report
        self._pause_reports: list[threading.Thread] = []
        self._recording_id = ""
        self._errors: list[BaseException] = []
        self._errors_lock = threading.Lock()

    def _fail(self, exc: BaseException, stop: threading.Event) -> None:
        with self._errors_lock:
            self._errors.append(exc)
        stop.set()

    def run(self, stop: threading.Event) -> RunSummary:
        """Record until `stop` is set or the configured duration is over; returns a summary.

        Raises the first fatal error, or an `AgentError` when segments could not be uploaded.
        """
        config = self.config
        # fail before creating a recording when the display or the monitor is not there
        region = probe_monitor(config.monitor)
        # check the encoder settings before the broker hears of us
        Segmenter(fps=config.fps, segment_seconds=config.segment_seconds)
        self._warn_of_blocked_capture()
        started_at = datetime.now(UTC)
        recording_id = self.broker.start_recording(started_at)
        self._chain = None if self.key is None else CustodyChain(self.key, recording_id)
        summary = RunSummary(recording_id=recording_id)
        if self.status is not None:
            self.status.update(
                state="recording", recording_id=recording_id, capture=self.health.state()
            )
        self._publish_settings()
        self._recording_id = recording_id
        self._report(
            f"recording {recording_id} started: monitor {config.monitor} "
            f"({region['width']}x{region['height']}), {config.fps:g} fps, "
            f"segments of {config.segment_seconds:g} s"
            + (f", for {config.duration:g} s" if config.duration is not None else ""),
            event="recording_started", recording_id=recording_id, monitor=config.monitor,
            width=region["width"], height=region["height"], fps=config.fps,
            segment_seconds=config.segment_seconds, duration=config.duration,
        )

        frames: queue.Queue[Frame | Cut | None] = queue.Queue(maxsize=max(1, config.frame_queue))
        segments: queue.Queue[Segment | None] = queue.Queue(maxsize=max(1, config.segment_queue))
        threads = [
            threading.Thread(
                target=self._capture_loop, args=(stop, frames, summary),
                name="bucketreel-capture", daemon=True,
            ),
            threading.Thread(
                target=self._encode_loop, args=(stop, frames, segments, summary),
                name="bucketreel-encode", daemon=True,
            ),
            threading.Thread(
                target=self._upload_loop, args=(stop, segments, recording_id, summary),
                name="bucketreel-upload", daemon=True,
            ),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.25)  # short joins keep the main thread responsive to signals

        for reporter in self._pause_reports:
            reporter.join(30)
        if summary.pauses and summary.pauses[-1].ended_at is None:  # stopped while paused
            last = summary.pauses[-1]
            summary.pauses[-1] = Pause(
                reason=last.reason, started_at=last.started_at, ended_at=datetime.now(UTC)
            )
            self._report_pause(recording_id, summary.pauses[-1])
        with self._errors_lock:
            errors = list(self._errors)
        if self.status is not None:
            self.status.update(state="stopped")
            if errors:
                self.status.error(str(errors[0]))
        self._report_gaps(recording_id, summary.delivery)
        try:
            self.broker.finish_recording(recording_id)
        except AgentError as exc:
            if not errors:
                raise
            log.warning("could not finish recording %s: %s", recording_id, exc)
        else:
            outcome = summary.delivery
            missing = len(outcome.failed) + len(outcome.dropped) + len(outcome.unsent)
            self._report(
                f"recording {recording_id} finished: {len(outcome.uploaded)} segment(s) "
                f"uploaded, {missing} missing, {summary.frames} frame(s) captured"
                + (f", {summary.unchanged_frames} unchanged" if summary.unchanged_frames else "")
                + (f", {summary.dropped_frames} dropped" if summary.dropped_frames else "")
                + (f", {summary.skipped_ticks} tick(s) skipped" if summary.skipped_ticks else "")
                + (f", {outcome.spooled} went through the spool" if outcome.spooled else "")
                + (f", paused {len(summary.pauses)} time(s)" if summary.pauses else ""),
                event="recording_finished", recording_id=recording_id,
                uploaded=len(outcome.uploaded), missing=missing, frames=summary.frames,
                unchanged_frames=summary.unchanged_frames, dropped_frames=summary.dropped_frames,
                skipped_ticks=summary.skipped_ticks, spooled=outcome.spooled,
                pauses=len(summary.pauses), cpu_seconds=STAGES.snapshot(),
            )
        if errors:
            raise errors[0]
        gaps = gap_summary(summary.delivery)
        if gaps is not None:
            raise AgentError(f"recording {recording_id}: {gaps}")
        return summary

    def _warn_of_blocked_capture(self) -> None:
        """Say at start what the OS already tells: a Wayland session, no permission."""
        cause = self.health.known_cause()
        advice = screen.advice(cause)
        if advice is not None:
            self._report(
                f"warning: {advice}; until then the screen capture will be reported blocked",
                event="capture_warning", reason=cause,
            )

    def _report_gaps(self, recording_id: str, outcome: DeliveryOutcome) -> None:
        """Tell the broker which segments will never arrive, by reason (best effort)."""
        lost: tuple[tuple[list[int], GapReason], ...] = (
            ([e.seq for e in outcome.failed], "refused"),
            (outcome.dropped, "spool_limit"),
            (outcome.unsent, "unsent_at_exit"),
        )
        for seqs, reason in lost:
            if not seqs:
                continue
            try:
                self.broker.report_gap(recording_id, sign_gap(
                    self.key, recording_id, GapReport(seqs=sorted(seqs), reason=reason)
                ))
            except AgentError as exc:
                log.warning("could not report the gap (%s: %s) to the broker: %s",
                            reason, seqs, exc)

    def _report_pause(self, recording_id: str, pause: Pause) -> None:
        """Tell the broker about a pause (best effort: it shows as a gap either way)."""
        try:
            self.broker.report_gap(
                recording_id,
                sign_gap(self.key, recording_id, GapReport(
                    seqs=[], reason=cast(GapReason, pause.reason), from_=pause.started_at,
                    to=pause.ended_at or pause.started_at,
                )),
            )
        except AgentError as exc:
            log.warning("could not report the pause (%s) to the broker: %s", pause.reason, exc)

    def _capture_loop(
        self,
        stop: threading.Event,
        frames: queue.Queue[Frame | Cut | None],
        summary: RunSummary,
    ) -> None:
        duration = self.config.duration
        started = time.monotonic()
        restarted = False
        try:
            while not stop.is_set():
                left = duration
                if duration is not None and restarted:
                    left = duration - (time.monotonic() - started)
                    if left <= 0:
                        break
                reason = self._capture_until_pause(stop, frames, summary, left)
                if reason is None:
                    break
                restarted = True
                if reason == RETIME:
                    frames.put(Cut(self._retime()))
                    continue
                frames.put(Cut())  # the encoder closes the segment; it gets uploaded
                if reason == CAPTURE_BLOCKED:
                    if not self._blocked(stop, summary, started):
                        break
                elif not self._paused(stop, reason, summary, started):
                    break
        except Exception as exc:
            self._fail(exc, stop)
        finally:
            summary.skipped_ticks = self.capture.skipped
            if self.status is not None:
                self.status.update(state="stopping")
            frames.put(None)  # the encoder always drains the queue, so this cannot hang

    def _capture_until_pause(
        self,
        stop: threading.Event,
        frames: queue.Queue[Frame | Cut | None],
        summary: RunSummary,
        duration: float | None,
    ) -> str | None:
        """Capture until stopped or out of time (None), until a pause is due (its reason), or
        until a segment would start while new settings are wanted (RETIME)."""
        last_drop_log = -1e9
        ticks_per_segment = Segmenter(
            fps=self._settings.fps, segment_seconds=self._settings.segment_seconds
        ).ticks_per_segment  # the encoder's grid: a new slot starts a new segment
        slot: int | None = None
        grabbed = self.capture.frames(stop, duration=duration)
        try:
            for frame in grabbed:
                reason = self.idle.check()
                if reason is not None:
                    return reason
                if self.health.feed(frame) and self.health.blocked is not None:
                    return CAPTURE_BLOCKED  # the frame is dropped: it shows nothing
                wanted = self._follow_policy()
                if frame.tick // ticks_per_segment != slot:  # this frame starts a segment
                    if wanted.schedule() != self._settings.schedule():
                        return RETIME  # the frame is dropped; the new schedule starts now
                    slot = frame.tick // ticks_per_segment
                summary.frames += 1
                try:
                    frames.put_nowait(frame)
                except queue.Full:
                    summary.dropped_frames += 1
                    if time.monotonic() - last_drop_log > 10:
                        last_drop_log = time.monotonic()
                        log.warning("the encoder is falling behind: dropping frames")
        finally:
            grabbed.close()  # releases the display connection
        return None

    def _paused(
        self, stop: threading.Event, reason: str, summary: RunSummary, started: float
    ) -> bool:
        """Wait while paused; True when capture should resume, False when the run ends."""
        pause = Pause(reason=reason, started_at=datetime.now(UTC))
        summary.pauses.append(pause)
        self.health.restart()  # a screen unchanged across the pause is no evidence
        what = "the screen is locked" if reason == "locked" else (
            f"no input for {self.idle.idle_seconds:g} s")
        self._report(f"paused: {what}; the current segment is being uploaded",
                     event="paused", reason=reason, recording_id=self._recording_id)
        if self.status is not None:
            self.status.update(state=f"paused_{reason}")
        duration = self.config.duration
        resume = False
        while not stop.wait(self.idle.poll):
            if duration is not None and time.monotonic() - started >= duration:
                break
            self._follow_policy()  # a new idle timeout may end the pause
            if self.idle.check() is None:
                resume = True
                break
        if not resume:
            return False  # the pause ends with the run; reported at the end
        ended = Pause(reason=reason, started_at=pause.started_at, ended_at=datetime.now(UTC))
        summary.pauses[-1] = ended
        seconds = ((ended.ended_at or pause.started_at) - pause.started_at).total_seconds()
        self._report(f"resumed after {seconds:.0f} s paused ({reason})", event="resumed",
                     reason=reason, paused_seconds=round(seconds, 3),
                     recording_id=self._recording_id)
        if self.status is not None:
            self.status.update(state="recording")
        self._report_later(ended)
        return True

    def _blocked(self, stop: threading.Event, summary: RunSummary, started: float) -> bool:
        """Keep grabbing frames, encoding none, until the picture returns (True: recording
        resumes) or the run ends (False)."""
        blocked = self.health.blocked
        if blocked is None:
            return True
        pause = Pause(reason=CAPTURE_BLOCKED, started_at=blocked.since)
        summary.pauses.append(pause)
        advice = screen.advice(blocked.reason)
        self._report(
            f"screen capture blocked ({blocked.reason}: {describe(blocked.reason)}): no "
            f"picture for {self.health.blocked_seconds:g} s; nothing is uploaded while it "
            "lasts, the gap is reported, and recording resumes when the picture returns"
            + (f". {advice}" if advice else ""),
            event="capture_blocked", reason=blocked.reason,
            since=blocked.since.isoformat(), recording_id=self._recording_id,
        )
        if self.status is not None:
            self.status.update(state=CAPTURE_BLOCKED, capture=self.health.state())
        duration = self.config.duration
        left = None if duration is None else duration - (time.monotonic() - started)
        if left is not None and left <= 0:
            return False
        ended_at: datetime | None = None
        grabbed = self.capture.frames(stop, duration=left)
        try:
            for frame in grabbed:
                summary.blocked_frames += 1
                self._follow_policy()
                if self.health.feed(frame) and self.health.blocked is None:
                    ended_at = frame.captured_at
                    break
        finally:
            grabbed.close()
        if ended_at is None:
            return False  # the gap ends with the run; reported at the end
        ended = Pause(reason=CAPTURE_BLOCKED, started_at=pause.started_at, ended_at=ended_at)
        summary.pauses[-1] = ended
        seconds = (ended_at - pause.started_at).total_seconds()
        self._report(
            f"screen capture works again after {seconds:.0f} s blocked ({blocked.reason}): "
            "recording resumes", event="capture_resumed", reason=blocked.reason,
            blocked_seconds=round(seconds, 3), recording_id=self._recording_id,
        )
        if self.status is not None:
            self.status.update(state="recording", capture=self.health.state())
        self._report_later(ended)
        return True

    def _report_later(self, pause: Pause) -> None:
        """Report a finished pause from a thread of its own (capture goes on meanwhile)."""
        reporter = threading.Thread(
            target=self._report_pause, args=(self._recording_id, pause),
            name="bucketreel-pause-report", daemon=True,
        )
        reporter.start()
        self._pause_reports.append(reporter)

    def _follow_policy(self) -> LiveSettings:
        """The settings wanted now: a new idle timeout holds at once, and a change is
        reported once (fps and segment length apply from the next segment)."""
        if self._live_settings is None:
            return self._settings
        wanted = self._live_settings()
        if wanted != self._wanted:
            self._wanted = wanted
            if wanted.idle_seconds != self.idle.idle_seconds:
                self.idle.idle_seconds = wanted.idle_seconds
                self._publish_settings()
            later = wanted.schedule() != self._settings.schedule()
            self._report(
                f"policy changed: now {wanted.describe()}"
                + (" (fps, segment length and quality from the next segment)" if later else ""),
                event="policy_changed", fps=wanted.fps, segment_seconds=wanted.segment_seconds,
                idle_seconds=wanted.idle_seconds, quality=wanted.quality,
            )
        return wanted

    def _publish_settings(self) -> None:
        """Tell `status` and the heartbeat what the recording runs with now."""
        if self.status is not None:
            self.status.update(settings={
                "fps": self._settings.fps,
                "segment_seconds": self._settings.segment_seconds,
                "idle_seconds": self.idle.idle_seconds,
                "quality": self._settings.quality,
            })

    def _retime(self) -> LiveSettings:
        """Switch capture to the wanted fps and segment length (between two segments)."""
        new = self._wanted
        self._settings = new
        self.capture.fps = new.fps
        self.capture.refresh_ticks = max(1, round(new.segment_seconds * new.fps))
        self._publish_settings()
        log.info("capture now at %g fps, segments of %g s, quality %s",
                 new.fps, new.segment_seconds, new.quality)
        return new

    def _encode_loop(
        self,
        stop: threading.Event,
        frames: queue.Queue[Frame | Cut | None],
        segments: queue.Queue[Segment | None],
        summary: RunSummary,
    ) -> None:
        config = self.config

        def cutter(
            fps: float, segment_seconds: float, quality: str, first_seq: int = 0
        ) -> Segmenter:
            return Segmenter(
                fps=fps, segment_seconds=segment_seconds, first_seq=first_seq,
                **encoder_options(quality, config.crf),
            )

        segmenter = cutter(config.fps, config.segment_seconds, config.quality)
        failed = False
        try:
            while (frame := frames.get()) is not None:
                if failed:
                    continue  # keep draining so the capture thread never blocks
                try:
                    if isinstance(frame, Cut):
                        closed = segmenter.flush()
                        if closed is not None:
                            self._hand_over(closed, segments)
                        if frame.settings is not None:  # the next segments are cut anew
                            summary.unchanged_frames += segmenter.unchanged
                            segmenter = cutter(
                                frame.settings.fps, frame.settings.segment_seconds,
                                frame.settings.quality, segmenter.next_seq,
                            )
                        continue
                    for segment in segmenter.push(frame):
                        self._hand_over(segment, segments)
                except Exception as exc:
                    failed = True
                    segmenter.abort()
                    self._fail(exc, stop)
            if not failed:
                last = segmenter.flush()
                if last is not None:
                    self._hand_over(last, segments)
        except Exception as exc:
            self._fail(exc, stop)
        finally:
            summary.unchanged_frames += segmenter.unchanged
            segments.put(None)  # the uploader always drains the queue

    def _hand_over(self, segment: Segment, segments: queue.Queue[Segment | None]) -> None:
        if self._chain is not None:
            segment = self._chain.seal(segment)
        log.info(
            "segment %d encoded: %d bytes, %d frame(s), %d ms",
            segment.seq, segment.size, segment.frames, segment.duration_ms,
        )
        if segments.full():
            log.warning("uploads are falling behind: %d segments wait in memory", segments.qsize())
        segments.put(segment)

    def _upload_loop(
        self,
        stop: threading.Event,
        segments: queue.Queue[Segment | None],
        recording_id: str,
        summary: RunSummary,
    ) -> None:
        delivery = Delivery(
            self.uploader,
            self.spool,
            recording_id,
            report=self._report,
            drain_seconds=self.config.drain_seconds,
            status=self.status,
        )
        summary.delivery = delivery.outcome
        try:
            delivery.run(segments)
        except Exception as exc:
            self._fail(exc, stop)
            # keep draining so the encoder never blocks; nothing more can be uploaded
            while (segment := segments.get()) is not None:
                log.error("segment %d dropped after a fatal error", segment.seq)
