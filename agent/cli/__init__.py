"""`bucketreel-agent`: enroll this workstation, then record its screen into the bucket.

One module per command group, each registering its own arguments: `enroll`, `run`,
`status`, `autostart`; `main` is the one top-level error handler.

Exit status: 0 on success, 1 on an error (`bucketreel-agent: error: <message>` on stderr, or
an `exit` event with `exit_code` in JSON logs), 2 on a usage error, 75 when another agent
already runs for this user, 78 when the settings file is refused (agent.config), 130 when
interrupted. Log and report formats: agent.logs.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from agent import config
from agent.cli import autostart, enroll, run, status
from agent.cli.common import PROG
from agent.errors import AgentError
from agent.instance import AlreadyRunning
from agent.logs import (
    LOG_FORMAT_ENV,
    LOG_FORMATS,
    default_log_format,
    fatal,
    redact,
    setup_logging,
)
from shared import version

EXIT_ALREADY_RUNNING = 75  # EX_TEMPFAIL
EXIT_CONFIG = 78  # EX_CONFIG: the settings file is refused (as the broker's configuration)


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

    for group in (enroll, run, status, autostart):
        group.register(commands)
    return parser


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
