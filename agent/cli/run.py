"""`run`: record the screen and upload each segment, until stopped."""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent import config, paths, spool
from agent.broker_client import BrokerClient
from agent.credentials import CredentialStore
from agent.custody import DeviceKey, key_path, sign_gap
from agent.errors import AgentError, BrokerError
from agent.heartbeat import HeartbeatSender
from agent.instance import InstanceLock
from agent.logs import redact, report
from agent.platform import winstop
from agent.platform.memory import tune_malloc
from agent.platform.stop import install_stop_signals
from agent.recorder import LiveSettings, Recorder, RecorderConfig
from agent.status import StatusFile, read_status
from agent.uploader import Uploader
from shared.wire import GapReport

log = logging.getLogger(__name__)


def _flag(key: str) -> Callable[[str], Any]:
    """The argparse type of a `run` flag: the same checks as the settings file's key."""
    bound = config.RANGES[key]

    def parse(text: str) -> Any:
        try:
            if config.SETTINGS[key].choices:
                return config.check_value(key, text)
            if bound.kind is str:
                return config.parse_size(text)
            try:
                value = bound.kind(text)
            except ValueError:
                raise ValueError(f"not a number: {text!r}") from None
            return bound.kind(bound.check(value))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0 and at most inf")
    return value


def cmd_run(args: argparse.Namespace) -> int:
    flags = {key: getattr(args, key) for key in config.RANGES}
    file_values = config.load_file(
        args.config or paths.config_dir() / config.CONFIG_FILE, required=args.config is not None
    )
    settings = config.resolve(file_values, flags)
    tune_malloc()  # before the threads start: they would get arenas of their own
    store = CredentialStore(paths.credential_path())
    lock = InstanceLock(paths.config_dir())
    lock.acquire()  # before anything touches the spool or rotates the device's tokens
    try:
        broker = BrokerClient.from_store(store)
        key = DeviceKey.load(key_path(store.path))
        if key is None:
            log.warning(
                "this device was enrolled without a signing key: its segments carry no "
                "chain-of-custody record (enroll again with --force to get one)"
            )
        spool_dir = paths.spool_dir()
        wiped = spool.wipe(spool_dir)
        if wiped:
            log.warning(
                "spool: wiped %d entries a previous run left (sealed under a key that died "
                "with that process: unreadable, so unrecoverable)", wiped,
            )
        uploader = Uploader(broker)
        close_dead_recording(broker, read_status(paths.config_dir()), key)
        status = StatusFile(paths.config_dir())
        status.update(state="starting")
        heartbeat = HeartbeatSender(broker, status, settings.heartbeat_seconds)
        heartbeat.start()  # its first reply brings the broker's policy

        def live_settings() -> LiveSettings:
            """The settings wanted now: the latest policy over the file, never over a flag."""
            now = config.with_policy(settings, heartbeat.policy, flags)
            return LiveSettings(
                fps=now.fps, segment_seconds=now.segment_seconds, idle_seconds=now.idle_seconds,
                quality=now.quality,
            )

        first = live_settings()
        recorder_config = RecorderConfig(
            fps=first.fps,
            segment_seconds=first.segment_seconds,
            duration=args.duration,
            monitor=settings.monitor,
            crf=settings.crf,
            quality=first.quality,
            drain_seconds=settings.drain_seconds,
            idle_seconds=first.idle_seconds,
            blocked_seconds=settings.capture_blocked_seconds,
        )
        stop = threading.Event()
        restore = install_stop_signals(stop)
        console_done = winstop.install(stop, report)  # a closed console (Windows)
        try:
            Recorder(
                recorder_config, uploader, spool.Spool(spool_dir, limit=settings.spool_limit),
                status=status,
                key=key,
                live_settings=live_settings,
            ).run(stop)
        except BaseException as exc:
            status.error(redact(str(exc)) or type(exc).__name__)
            raise
        finally:
            status.update(state="exited", spool_bytes=0, spool_segments=0)
            heartbeat.stop()
            restore()
            uploader.close()
            broker.close()
            with contextlib.suppress(AgentError):
                spool.wipe(spool_dir)  # nothing should be left; make sure
            console_done()  # the last step: Windows may end the process once it returns
    finally:
        lock.release()
    return 0


def close_dead_recording(
    broker: BrokerClient, stale: dict[str, object] | None, key: DeviceKey | None = None
) -> None:
    """Finish the recording a killed run left open, reporting the gap as `agent_died`.

    Called with the instance lock held, so the status file is a dead run's: an agent that
    exits in any orderly way leaves state "exited".
    """
    if not stale or stale.get("state") == "exited":
        return
    recording_id = stale.get("recording_id")
    if not isinstance(recording_id, str) or not recording_id:
        return
    gaps = stale.get("gaps")
    seqs = sorted({s for s in gaps if isinstance(s, int) and s >= 0}) if isinstance(
        gaps, list) else []
    try:
        broker.report_gap(
            recording_id, sign_gap(key, recording_id, GapReport(seqs=seqs, reason="agent_died"))
        )
        broker.finish_recording(recording_id)
    except BrokerError as exc:
        log.warning("could not close recording %s of a previous run: %s", recording_id, exc)
        return
    report(
        f"a previous run (pid {stale.get('pid')}) died with recording {recording_id} open: "
        "finished it, with a gap reported as agent_died",
        event="previous_run_closed", recording_id=recording_id, pid=stale.get("pid"), seqs=seqs,
    )


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p_run = commands.add_parser(
        "run",
        help="record the screen and upload it",
        description="Record the screen and upload each segment. SIGINT or SIGTERM stop "
        "gracefully: the current segment is finished and uploaded, then the recording is "
        "closed. A second interrupt aborts.",
    )
    p_run.add_argument(
        "--config", type=Path, metavar="PATH",
        help=f"settings file (default: {config.CONFIG_FILE} in the config directory, when "
        "there is one); flags override it",
    )
    p_run.add_argument(
        "--duration", type=_positive, metavar="S",
        help="stop after S seconds (default: run until interrupted)",
    )
    for key, setting in config.SETTINGS.items():  # also the settings file's keys
        p_run.add_argument(
            "--" + key.replace("_", "-"), type=_flag(key), metavar=setting.metavar,
            help=config.flag_help(key),
        )
    p_run.set_defaults(func=cmd_run)
