"""`bucketreel-agent`: enroll this workstation, then record its screen into the bucket.

Exit status: 0 on success, 1 on an error (`bucketreel-agent: error: <message>` on stderr),
2 on a usage error, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import threading
from collections.abc import Callable, Sequence

from agent import paths, spool
from agent.broker_client import BrokerClient
from agent.credentials import CredentialStore
from agent.encode import DEFAULT_CRF
from agent.enrollment import enroll
from agent.errors import AgentError
from agent.logs import redact, setup_logging
from agent.recorder import Recorder, RecorderConfig, install_stop_signals
from agent.uploader import Uploader
from shared import version
from shared.wire import MAX_SEGMENT_DURATION_MS

PROG = "bucketreel-agent"
MAX_FPS = 60.0

log = logging.getLogger(__name__)


def _number(
    kind: Callable[[str], float], *, lo: float, hi: float, lo_open: bool = False
) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        too_low = value <= lo if lo_open else value < lo
        if not math.isfinite(value) or too_low or value > hi:
            bound = f"more than {lo:g}" if lo_open else f"at least {lo:g}"
            raise argparse.ArgumentTypeError(f"must be {bound} and at most {hi:g}")
        return value

    return parse


def _int(lo: int, hi: int) -> Callable[[str], int]:
    parse = _number(int, lo=lo, hi=hi)
    return lambda text: int(parse(text))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Record this workstation's screen straight into the organisation's bucket.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {version()}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p_enroll = commands.add_parser(
        "enroll",
        help="enroll this workstation with a one-time code",
        description="Enroll this workstation with the broker, using a one-time code from an "
        "admin. The device credential is stored in the agent's config directory "
        f"(${paths.HOME_ENV}, else $XDG_CONFIG_HOME/bucketreel or ~/.config/bucketreel).",
    )
    p_enroll.add_argument("--broker", required=True, metavar="URL", help="the broker's URL")
    p_enroll.add_argument(
        "--code", required=True, metavar="CODE", help="the enrollment code ('-' reads stdin)"
    )
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
        "--fps", type=_number(float, lo=0, hi=MAX_FPS, lo_open=True), default=1.0,
        help="frames per second (default 1)",
    )
    p_run.add_argument(
        "--segment-seconds", type=_number(float, lo=1, hi=MAX_SEGMENT_DURATION_MS / 1000),
        default=60.0, metavar="S", help="length of each uploaded segment (default 60)",
    )
    p_run.add_argument(
        "--duration", type=_number(float, lo=0, hi=math.inf, lo_open=True), metavar="S",
        help="stop after S seconds (default: run until interrupted)",
    )
    p_run.add_argument(
        "--monitor", type=_int(0, 64), default=1, metavar="N",
        help="monitor to record, as mss numbers them: 1 = first (default), 0 = all together",
    )
    p_run.add_argument(
        "--crf", type=_int(0, 51), default=DEFAULT_CRF,
        help=f"H.264 quality, lower is better and larger (default {DEFAULT_CRF})",
    )
    p_run.set_defaults(func=cmd_run)
    return parser


def cmd_enroll(args: argparse.Namespace) -> int:
    code: str = args.code
    if code == "-":
        code = sys.stdin.readline().strip()
    store = CredentialStore(paths.credential_path())
    credential = enroll(args.broker, code, store, name=args.name, force=args.force)
    print(f"enrolled: device {credential.device_id} at {credential.broker_url}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    store = CredentialStore(paths.credential_path())
    broker = BrokerClient.from_store(store)
    spool.wipe(paths.spool_dir())
    uploader = Uploader(broker)
    config = RecorderConfig(
        fps=args.fps,
        segment_seconds=args.segment_seconds,
        duration=args.duration,
        monitor=args.monitor,
        crf=args.crf,
    )
    stop = threading.Event()
    restore = install_stop_signals(stop)
    try:
        Recorder(config, uploader).run(stop)
    finally:
        restore()
        uploader.close()
        broker.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The `bucketreel-agent` console script."""
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        result: int = args.func(args)
        return result
    except AgentError as exc:
        print(f"{PROG}: error: {redact(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
