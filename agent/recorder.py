"""The `run` pipeline: capture -> encode -> upload, three threads joined by bounded queues.

- The capture thread grabs frames on the tick schedule and never waits for the encoder: when
  the frame queue is full the frame is dropped (and counted).
- The encoder thread cuts frames into segments (in memory) and hands them to the uploader.
- The uploader thread uploads segments one at a time, in order.

Stopping (the `stop` event, set by a signal handler, by `duration` running out, or by a fatal
error) ends capture; the encoder then closes the last, partial segment, the uploader uploads
everything queued, and the recording is finished at the broker.

A segment that cannot be uploaded is reported and the recording goes on; at the end the run
fails with a count. A fatal error (display lost, device revoked, recording closed) stops the
whole run and is raised once the threads have wound down.
"""

from __future__ import annotations

import logging
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from agent.capture import Frame, ScreenCapture, probe_monitor
from agent.encode import DEFAULT_CRF, DEFAULT_PRESET, DEFAULT_TUNE, Segment, Segmenter
from agent.errors import AgentError, UploadError
from agent.uploader import Uploader, UploadResult

log = logging.getLogger(__name__)

Report = Callable[[str], None]


def report_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecorderConfig:
    fps: float = 1.0
    segment_seconds: float = 60.0
    duration: float | None = None  # seconds of capture; None = until stopped
    monitor: int = 1  # 1 = first monitor, 0 = all monitors as one canvas
    preset: str = DEFAULT_PRESET
    tune: str | None = DEFAULT_TUNE
    crf: int = DEFAULT_CRF
    frame_queue: int = 8  # frames waiting for the encoder before capture drops frames
    segment_queue: int = 32  # encoded segments waiting for upload (held in RAM)


@dataclass(slots=True, kw_only=True)
class RunSummary:
    recording_id: str
    uploaded: list[UploadResult] = field(default_factory=list)
    failed: list[UploadError] = field(default_factory=list)
    frames: int = 0  # frames captured
    dropped_frames: int = 0  # captured but dropped because the encoder lagged
    skipped_ticks: int = 0  # ticks not captured because capture ran late


def _human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024 or unit == "MiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


class Recorder:
    """Records one monitor into one recording at the broker."""

    def __init__(
        self,
        config: RecorderConfig,
        uploader: Uploader,
        *,
        capture: ScreenCapture | None = None,
        report: Report = report_to_stderr,
    ) -> None:
        self.config = config
        self.uploader = uploader
        self.broker = uploader.broker
        self.capture = capture or ScreenCapture(monitor=config.monitor, fps=config.fps)
        self._report = report
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
        started_at = datetime.now(UTC)
        recording_id = self.broker.start_recording(started_at)
        summary = RunSummary(recording_id=recording_id)
        self._report(
            f"recording {recording_id} started: monitor {config.monitor} "
            f"({region['width']}x{region['height']}), {config.fps:g} fps, "
            f"segments of {config.segment_seconds:g} s"
            + (f", for {config.duration:g} s" if config.duration is not None else "")
        )

        frames: queue.Queue[Frame | None] = queue.Queue(maxsize=max(1, config.frame_queue))
        segments: queue.Queue[Segment | None] = queue.Queue(maxsize=max(1, config.segment_queue))
        threads = [
            threading.Thread(
                target=self._capture_loop, args=(stop, frames, summary),
                name="bucketreel-capture", daemon=True,
            ),
            threading.Thread(
                target=self._encode_loop, args=(stop, frames, segments),
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

        with self._errors_lock:
            errors = list(self._errors)
        try:
            self.broker.finish_recording(recording_id)
        except AgentError as exc:
            if not errors:
                raise
            log.warning("could not finish recording %s: %s", recording_id, exc)
        else:
            self._report(
                f"recording {recording_id} finished: {len(summary.uploaded)} segment(s) "
                f"uploaded, {len(summary.failed)} failed, {summary.frames} frame(s) captured"
                + (f", {summary.dropped_frames} dropped" if summary.dropped_frames else "")
                + (f", {summary.skipped_ticks} tick(s) skipped" if summary.skipped_ticks else "")
            )
        if errors:
            raise errors[0]
        if summary.failed:
            seqs = ", ".join(str(e.seq) for e in summary.failed)
            raise AgentError(
                f"{len(summary.failed)} segment(s) of recording {recording_id} could not be "
                f"uploaded (seq {seqs})"
            )
        return summary

    def _capture_loop(
        self, stop: threading.Event, frames: queue.Queue[Frame | None], summary: RunSummary
    ) -> None:
        last_drop_log = -1e9
        try:
            for frame in self.capture.frames(stop, duration=self.config.duration):
                summary.frames += 1
                try:
                    frames.put_nowait(frame)
                except queue.Full:
                    summary.dropped_frames += 1
                    if time.monotonic() - last_drop_log > 10:
                        last_drop_log = time.monotonic()
                        log.warning("the encoder is falling behind: dropping frames")
        except Exception as exc:
            self._fail(exc, stop)
        finally:
            summary.skipped_ticks = self.capture.skipped
            frames.put(None)  # the encoder always drains the queue, so this cannot hang

    def _encode_loop(
        self,
        stop: threading.Event,
        frames: queue.Queue[Frame | None],
        segments: queue.Queue[Segment | None],
    ) -> None:
        config = self.config
        segmenter = Segmenter(
            fps=config.fps,
            segment_seconds=config.segment_seconds,
            preset=config.preset,
            tune=config.tune,
            crf=config.crf,
        )
        failed = False
        try:
            while (frame := frames.get()) is not None:
                if failed:
                    continue  # keep draining so the capture thread never blocks
                try:
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
            segments.put(None)  # the uploader always drains the queue

    @staticmethod
    def _hand_over(segment: Segment, segments: queue.Queue[Segment | None]) -> None:
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
        fatal = False
        while (segment := segments.get()) is not None:
            if fatal:
                log.error("segment %d dropped after a fatal error", segment.seq)
                continue
            try:
                result = self.uploader.upload(recording_id, segment)
            except UploadError as exc:
                summary.failed.append(exc)
                log.error("%s", exc)
                self._report(f"segment {segment.seq} NOT uploaded: {exc}")
            except Exception as exc:
                fatal = True
                self._fail(exc, stop)
            else:
                summary.uploaded.append(result)
                self._report(
                    f"segment {result.seq} uploaded: {_human_size(result.size)}, "
                    f"{result.duration_ms / 1000:.1f} s, {segment.frames} frame(s), "
                    f"{segment.width}x{segment.height} -> {result.key_path}"
                )


def install_stop_signals(
    stop: threading.Event, report: Report = report_to_stderr
) -> Callable[[], None]:
    """SIGINT/SIGTERM set `stop` (graceful); a second one raises KeyboardInterrupt.

    Call from the main thread. Returns a function that restores the previous handlers.
    """
    signums = [signal.SIGINT, signal.SIGTERM]
    previous: dict[int, Any] = {s: signal.getsignal(s) for s in signums}

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        report(
            f"{signal.Signals(signum).name}: stopping; the current segment is being "
            "finished and uploaded (interrupt again to abort)"
        )

    for s in signums:
        signal.signal(s, handler)

    def restore() -> None:
        for s, h in previous.items():
            signal.signal(s, h)

    return restore
