"""`bucketreel-agent`: enroll this workstation, then record its screen into the bucket.

Exit status: 0 on success, 1 on an error (`bucketreel-agent: error: <message>` on stderr, or
an `exit` event with `exit_code` in JSON logs), 2 on a usage error, 75 when another agent
already runs for this user, 78 when the settings file is refused (agent.config), 130 when
interrupted. Log and report formats: agent.logs.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import logging
import math
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent import autostart, config, credentials, paths, spool
from agent.broker_client import BrokerClient
from agent.credentials import CredentialStore
from agent.custody import DeviceKey, key_path, sign_gap
from agent.enrollment import enroll
from agent.errors import AgentError, BrokerError, ConfigError
from agent.health import status_line
from agent.heartbeat import HeartbeatSender
from agent.instance import AlreadyRunning, InstanceLock
from agent.login import enroll_by_login
from agent.logs import (
    LOG_FORMAT_ENV,
    LOG_FORMATS,
    default_log_format,
    fatal,
    redact,
    report,
    setup_logging,
)
from agent.platform import winstop
from agent.platform.memory import tune_malloc
from agent.platform.stop import install_stop_signals
from agent.recorder import (
    LiveSettings,
    Recorder,
    RecorderConfig,
)
from agent.status import StatusFile, read_status
from agent.uploader import Uploader
from shared import version
from shared.wire import GapReport

PROG = "bucketreel-agent"
EXIT_ALREADY_RUNNING = 75  # EX_TEMPFAIL
EXIT_CONFIG = 78  # EX_CONFIG: the settings file is refused (as the broker's configuration)

log = logging.getLogger(__name__)


def _flag(key: str) -> Callable[[str], Any]:
    """The argparse type of a `run` flag: the same checks as the settings file's key."""
    bound = config.RANGES[key]

    def parse(text: str) -> Any:
        try:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Record this workstation's screen straight into the organisation's bucket.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {version()}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    parser.add_argument(
        "--log-format", choices=LOG_FORMATS, default=default_log_format(),
        help="text: a readable line per event; json: one JSON object per line (time, level, "
        "event, message, fields) for a service manager or log shipper; auto (the default, or "
        f"${LOG_FORMAT_ENV}): text on a terminal, else json",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p_enroll = commands.add_parser(
        "enroll",
        help="enroll this workstation (one-time code, or sign in as the employee)",
        description="Enroll this workstation with the broker, using a one-time code from an "
        "admin (--code), or by signing in as the employee (--email and --tenant: the password "
        "and the authenticator code are asked for at the terminal). For a silent install the "
        "code may come from a file (--code-file) or, when none of --code, --code-file and "
        f"--email is given, from ${ENROLL_CODE_ENV}. The device credential is "
        "stored in the agent's config directory "
        f"(${paths.HOME_ENV}, else %LOCALAPPDATA%\\bucketreel on Windows, "
        "~/Library/Application Support/bucketreel on macOS, $XDG_CONFIG_HOME/bucketreel or "
        "~/.config/bucketreel on Linux).",
    )
    p_enroll.add_argument("--broker", required=True, metavar="URL", help="the broker's URL")
    how = p_enroll.add_mutually_exclusive_group()
    how.add_argument("--code", metavar="CODE", help="the enrollment code ('-' reads stdin)")
    how.add_argument(
        "--code-file", type=Path, metavar="PATH",
        help="read the enrollment code from PATH, a file of this user that no one else may "
        "read or write (mode 0600)",
    )
    how.add_argument("--email", metavar="EMAIL", help="sign in as this employee instead")
    p_enroll.add_argument("--tenant", metavar="NAME", help="the organisation (with --email)")
    p_enroll.add_argument("--name", help="the device name shown to admins (default: host name)")
    p_enroll.add_argument(
        "--force", action="store_true", help="replace an existing enrollment of this workstation"
    )
    p_enroll.set_defaults(func=cmd_enroll)

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

    p_status = commands.add_parser(
        "status",
        help="show what the agent of this user is doing",
        description="Show whether the agent runs, its recording, spool, last upload and "
        "errors, from the status file the running agent keeps in its config directory. "
        "Exit status 0 when an agent runs, 3 when none does.",
    )
    p_status.add_argument("--json", action="store_true", help="print the status as JSON")
    p_status.set_defaults(func=cmd_status)

    p_autostart = commands.add_parser(
        "autostart",
        help="start the agent at login, and again when it fails",
        description="Install, remove or show this user's entry that starts 'run' at login and "
        "again when it fails: a systemd user unit on Linux "
        f"($XDG_CONFIG_HOME/systemd/user/{autostart.UNIT_NAME}, else under ~/.config), a "
        f"LaunchAgent on macOS (~/Library/LaunchAgents/{autostart.LAUNCHD_LABEL}.plist), a "
        f"Task Scheduler task on Windows (\\{autostart.TASK_NAME}). Enroll first: until then "
        "the agent fails and is started again.",
    )
    actions = p_autostart.add_subparsers(dest="action", required=True, metavar="ACTION")
    p_install = actions.add_parser(
        "install", help="write the entry, register it and start the agent",
        description="Write the entry (replacing an older one), register it with the service "
        "manager and start the agent. When the manager cannot be reached (no systemctl, no "
        "user bus, no GUI session) the entry is still written, and the output says what to "
        "run. Exit status 0 when the entry is written.",
    )
    p_install.add_argument(
        "--dry-run", action="store_true",
        help="print the entry on standard output; write and register nothing",
    )
    actions.add_parser(
        "remove", help="stop the agent the entry started, and remove the entry",
        description="Stop the agent the entry started (gracefully, on Linux and macOS) and "
        "remove the entry. Exit status 0, also when nothing was installed.",
    )
    actions.add_parser(
        "status", help="show whether the entry is installed, where, and what it starts",
        description="Show whether the entry is installed, where, the command it starts and "
        f"what the service manager says. Exit status 0 when installed, {EXIT_NOT_INSTALLED} "
        "when not.",
    )
    p_autostart.set_defaults(func=cmd_autostart)
    return parser


def _ask(prompt: str) -> str:
    """A secret from the terminal, not echoed; a line of standard input when there is none."""
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    return sys.stdin.readline().rstrip("\r\n")


def _tell(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def cmd_enroll(args: argparse.Namespace) -> int:
    store = CredentialStore(paths.credential_path())
    if args.email is not None:
        if not args.tenant:
            raise ConfigError("--email needs --tenant (the organisation's name)")
        credential = enroll_by_login(
            args.broker, args.tenant, args.email, store, ask=_ask, tell=_tell,
            name=args.name, force=args.force,
        )
    else:
        code = _enrollment_code(args)
        credential = enroll(args.broker, code, store, name=args.name, force=args.force)
    print(f"enrolled: device {credential.device_id} at {credential.broker_url}")
    return 0


ENROLL_CODE_ENV = "BUCKETREEL_ENROLL_CODE"
_MAX_CODE_FILE = 4096


def _enrollment_code(args: argparse.Namespace) -> str:
    """The code from --code (or stdin), --code-file, or $BUCKETREEL_ENROLL_CODE, in that order."""
    if args.code is not None:
        return sys.stdin.readline().strip() if args.code == "-" else str(args.code)
    if args.code_file is not None:
        raw = credentials.read_private(
            args.code_file, holds="an enrollment code", max_bytes=_MAX_CODE_FILE
        )
        if raw is None:
            raise ConfigError(f"cannot read the enrollment code: {args.code_file} does not exist")
        try:
            return raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise ConfigError(f"{args.code_file} does not hold an enrollment code") from None
    if code := os.environ.get(ENROLL_CODE_ENV, "").strip():
        return code
    raise ConfigError(
        f"enroll needs --code CODE, --code-file PATH or --email EMAIL, or ${ENROLL_CODE_ENV}"
    )


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
                fps=now.fps, segment_seconds=now.segment_seconds, idle_seconds=now.idle_seconds
            )

        first = live_settings()
        recorder_config = RecorderConfig(
            fps=first.fps,
            segment_seconds=first.segment_seconds,
            duration=args.duration,
            monitor=settings.monitor,
            crf=settings.crf,
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


EXIT_NOT_RUNNING = 3


def cmd_status(args: argparse.Namespace) -> int:
    config_dir = paths.config_dir()
    probe = InstanceLock(config_dir)
    try:
        probe.acquire()
    except AlreadyRunning:
        running = True
    else:
        running = False
        probe.release()
    data = read_status(config_dir) or {}
    if args.json:
        print(json.dumps({"running": running, **data}, indent=2, sort_keys=True))
        return 0 if running else EXIT_NOT_RUNNING
    if not running:
        print("agent: not running")
        if data:
            print(f"last seen: {data.get('updated_at')} ({data.get('state')})")
    else:
        print(f"agent: running (pid {data.get('pid')}), {data.get('state', 'unknown')}")
    if data:
        last = data.get("last_upload") or {}
        error = data.get("last_error") or {}
        print(f"recording: {data.get('recording_id') or '-'}")
        settings = data.get("settings")
        if isinstance(settings, dict):
            def num(key: str) -> str:
                value = settings.get(key)
                return f"{value:g}" if isinstance(value, int | float) else "?"

            print(f"settings: {num('fps')} fps, segments of {num('segment_seconds')} s, "
                  + (f"pause after {num('idle_seconds')} s idle" if settings.get("idle_seconds")
                     else "no idle pause"))
        capture = status_line(data.get("capture"))
        if capture is not None:
            print(capture)
        print(f"segments uploaded: {data.get('uploaded', 0)}"
              + (f", last seq {last.get('seq')} at {last.get('at')}" if last else ""))
        in_ram = data.get("spool_memory_segments") or 0
        print(f"spool: {data.get('spool_segments', 0)} segment(s), "
              f"{data.get('spool_bytes', 0)} bytes"
              + (f" ({in_ram} held in RAM: the disk refuses the spool)" if in_ram else ""))
        gaps = data.get("gaps") or []
        print(f"gaps: {', '.join(map(str, gaps)) if gaps else 'none'}")
        print(f"errors: {data.get('errors', 0)}"
              + (f", last at {error.get('at')}: {error.get('message')}" if error else ""))
    return 0 if running else EXIT_NOT_RUNNING


EXIT_NOT_INSTALLED = 3


def cmd_autostart(args: argparse.Namespace) -> int:
    if args.action == "install" and args.dry_run:
        where, text = autostart.preview()
        _tell(f"dry run: would write {where}")
        print(text, end="")
        return 0
    if args.action == "install":
        result = autostart.install()
    elif args.action == "remove":
        result = autostart.remove()
    else:
        result = autostart.status()
    print(f"autostart: {'installed' if result.installed else 'not installed'}: {result.where}")
    if result.command is not None:
        print(f"starts: {result.command}")
    for note in result.notes:
        print(note)
    return EXIT_NOT_INSTALLED if args.action == "status" and not result.installed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """The `bucketreel-agent` console script."""
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.log_format)
    try:
        result: int = args.func(args)
        return result
    except AlreadyRunning as exc:
        return _fail(str(exc), EXIT_ALREADY_RUNNING)
    except config.SettingsFileError as exc:
        return _fail(str(exc), EXIT_CONFIG)
    except AgentError as exc:
        return _fail(str(exc), 1)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)


def _fail(message: str, exit_code: int) -> int:
    fatal(redact(message) or "failed", exit_code=exit_code)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
