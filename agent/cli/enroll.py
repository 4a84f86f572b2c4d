"""`enroll`: register this workstation with the broker (a one-time code, or signing in)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from agent import credentials, paths
from agent.cli.common import tell
from agent.credentials import CredentialStore
from agent.enrollment import enroll
from agent.errors import ConfigError
from agent.login import enroll_by_login

ENROLL_CODE_ENV = "BUCKETREEL_ENROLL_CODE"
_MAX_CODE_FILE = 4096


def _ask(prompt: str) -> str:
    """A secret from the terminal, not echoed; a line of standard input when there is none."""
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    return sys.stdin.readline().rstrip("\r\n")


def cmd_enroll(args: argparse.Namespace) -> int:
    store = CredentialStore(paths.credential_path())
    if args.email is not None:
        if not args.tenant:
            raise ConfigError("--email needs --tenant (the organisation's name)")
        credential = enroll_by_login(
            args.broker, args.tenant, args.email, store, ask=_ask, tell=tell,
            name=args.name, force=args.force,
        )
    else:
        code = _enrollment_code(args)
        credential = enroll(args.broker, code, store, name=args.name, force=args.force)
    print(f"enrolled: device {credential.device_id} at {credential.broker_url}")
    return 0


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


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
