"""`autostart install|remove|status`: start the agent at login (agent.autostart)."""

from __future__ import annotations

import argparse

from agent import autostart
from agent.cli.common import tell

EXIT_NOT_INSTALLED = 3


def cmd_autostart(args: argparse.Namespace) -> int:
    if args.action == "install" and args.dry_run:
        where, text = autostart.preview()
        tell(f"dry run: would write {where}")
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


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
