"""What every command group shares: settings from the environment, secrets from standard
input, JSON output, and the wrapper that runs an operator command against the database."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broker.errors import BrokerError
from broker.settings import Settings, load_env_file

if TYPE_CHECKING:
    from broker import admin

EX_USAGE = 2
EX_CONFIG = 78



class UsageError(BrokerError):
    """A command line argparse cannot judge alone (options that contradict each other)."""


def environment(args: argparse.Namespace) -> dict[str, str]:
    """The environment, filled in from --env-file where a variable is not already set."""
    values = load_env_file(Path(args.env_file)) if args.env_file else {}
    return {**values, **os.environ}


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings.from_env(environment(args))


def read_secret(label: str) -> str:
    """A secret from the terminal (not echoed), or the first line of standard input."""
    if sys.stdin.isatty():
        value = getpass.getpass(f"{label}: ")
    else:
        value = sys.stdin.readline().rstrip("\r\n")
    if not value:
        raise BrokerError(f"no {label} given on standard input")
    return value


def print_json(data: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _always(_result: dict[str, Any]) -> bool:
    return True


def admin_command(
    action: Callable[[admin.AdminContext, argparse.Namespace], Coroutine[Any, Any, dict[str, Any]]],
    *,
    ok: Callable[[dict[str, Any]], bool] = _always,
    check: Callable[[argparse.Namespace], None] | None = None,
) -> Callable[[argparse.Namespace], int]:
    """Run an operator command and print its JSON; exit 1 when `ok` judges the result bad.

    `check` judges the arguments first, before any setting or database is touched (it
    raises UsageError: exit 2).
    """

    def run(args: argparse.Namespace) -> int:
        from broker import admin  # imported here so --help and --version stay quick

        if check is not None:
            check(args)
        settings = settings_from(args)

        async def go() -> dict[str, Any]:
            async with admin.context(settings) as ctx:
                return await action(ctx, args)

        result = asyncio.run(go())
        print_json(result)
        return 0 if ok(result) else 1

    return run
