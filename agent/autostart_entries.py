"""The autostart entries: where each OS keeps one, and their text, rendered by pure
functions from a command line (a systemd user unit, a macOS LaunchAgent property list, a
Windows Task Scheduler task); `agent.autostart` writes and registers them."""

from __future__ import annotations

import getpass
import os
import plistlib
import posixpath
import re
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path

from agent.errors import AgentError

NAME = "bucketreel-agent"
UNIT_NAME = f"{NAME}.service"
TASK_NAME = NAME
LAUNCHD_LABEL = "com.bucketreel.agent"
DESCRIPTION = "bucketreel agent: records this screen into the organisation's bucket"
RESTART_SECONDS = 10
STOP_TIMEOUT_SECONDS = 120  # the agent's default drain (60 s) and its last segment's upload
RECHECK_MINUTES = 5  # Windows: how soon a dead agent is started again
TASK_NS = "http://schemas.microsoft.com/windows/2004/02/mit/task"


class AutostartError(AgentError):
    """The autostart entry cannot be made, written, registered or removed."""



# --- the three entries, rendered ---------------------------------------------------------

_SYSTEMD_PLAIN = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")
_SYSTEMD_PATH_REFUSES = frozenset("\"'\\$")


def _has_control(text: str) -> bool:
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in text)


def systemd_quote(word: str, *, executable: bool = False) -> str:
    """`word` as one word of an `ExecStart=` line, read back by systemd exactly.

    `%` starts a specifier, so it is doubled; in an argument `$` starts a variable, so it is
    doubled too (systemd does not expand the program's path). A word of other characters
    than letters, digits and `_@%+=:,./-` goes in double quotes, `\\` and `"` escaped, control
    characters as `\\xNN`. systemd refuses a program path with a quote, a backslash or a
    control character; a `$` in it would be expanded in argv[0], so it is refused too.
    """
    try:
        word.encode("utf-8")
    except UnicodeEncodeError:
        raise AutostartError(f"{word!r} is not valid UTF-8, as a unit file must be") from None
    if "\0" in word:
        raise AutostartError(f"a command line cannot hold a NUL character: {word!r}")
    if executable:
        if not posixpath.isabs(word) or posixpath.normpath(word) != word:
            raise AutostartError(f"systemd needs the program as a normalized absolute path: "
                                 f"{word!r}")
        if _has_control(word) or _SYSTEMD_PATH_REFUSES.intersection(word):
            raise AutostartError(
                "systemd cannot start a program whose path holds a quote, a backslash, a "
                f"dollar sign or a control character: {word!r}; install the agent elsewhere"
            )
        escaped = word.replace("%", "%%")
        return escaped if _SYSTEMD_PLAIN.fullmatch(word) else f'"{escaped}"'
    escaped = word.replace("%", "%%").replace("$", "$$")
    if _SYSTEMD_PLAIN.fullmatch(word):
        return escaped
    out = []
    for ch in escaped:
        if ch in '\\"':
            out.append("\\" + ch)
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def systemd_unit(argv: Sequence[str]) -> str:
    """The user unit that starts `argv` at login and again `RESTART_SECONDS` after a failure."""
    if not argv:
        raise AutostartError("no command to start")
    words = [systemd_quote(argv[0], executable=True), *(systemd_quote(a) for a in argv[1:])]
    return "\n".join([
        f"# Written by `{NAME} autostart install`; `{NAME} autostart remove` removes it.",
        "[Unit]",
        f"Description={DESCRIPTION}",
        "After=graphical-session.target",
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={' '.join(words)}",
        "Restart=on-failure",
        f"RestartSec={RESTART_SECONDS}",
        f"TimeoutStopSec={STOP_TIMEOUT_SECONDS}",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ])


def launch_agent_plist(argv: Sequence[str], *, log_path: Path | None = None) -> bytes:
    """The LaunchAgent that starts `argv` at login and again when it exits unsuccessfully."""
    if not argv:
        raise AutostartError("no command to start")
    job: dict[str, object] = {
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": list(argv),
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "LimitLoadToSessionType": "Aqua",  # the user's graphical session: a screen to record
        "ThrottleInterval": RESTART_SECONDS,
        "ExitTimeOut": STOP_TIMEOUT_SECONDS,
    }
    if log_path is not None:
        job["StandardOutPath"] = job["StandardErrorPath"] = str(log_path)
    try:
        return plistlib.dumps(job, sort_keys=False)
    except ValueError as exc:  # a control character in a string
        raise AutostartError(f"cannot write the command as a property list: {exc}") from None


_WINDOWS_VARIABLE = re.compile(r"%[^%]+%")


def task_scheduler_xml(argv: Sequence[str], user: str) -> str:
    """The Task Scheduler task (schema 1.2) that starts `argv` when `user` logs on.

    `Command` and `Arguments` are quoted as the Microsoft C runtime splits a command line
    (`subprocess.list2cmdline`). Returned with an UTF-16 declaration: encode it so for
    `schtasks /XML`.
    """
    if not argv:
        raise AutostartError("no command to start")
    if not user.strip():
        raise AutostartError("no user to start the agent for")
    if any(_has_control(word) for word in [*argv, user]):
        raise AutostartError(f"a task cannot hold control characters: {list(argv)!r}")
    program, arguments = subprocess.list2cmdline([argv[0]]), subprocess.list2cmdline(argv[1:])
    if _WINDOWS_VARIABLE.search(program) or _WINDOWS_VARIABLE.search(arguments):
        raise AutostartError(
            f"Task Scheduler would expand the %NAME% in this command: {list(argv)!r}; "
            "install the agent elsewhere"
        )
    task = ET.Element("Task", {"version": "1.2", "xmlns": TASK_NS})
    info = ET.SubElement(task, "RegistrationInfo")
    _text(info, "Description", DESCRIPTION)
    _text(info, "URI", "\\" + TASK_NAME)
    logon = ET.SubElement(ET.SubElement(task, "Triggers"), "LogonTrigger")
    repetition = ET.SubElement(logon, "Repetition")
    _text(repetition, "Interval", f"PT{RECHECK_MINUTES}M")
    _text(repetition, "StopAtDurationEnd", "false")
    _text(logon, "Enabled", "true")
    _text(logon, "UserId", user)
    principal = ET.SubElement(ET.SubElement(task, "Principals"), "Principal", id="Author")
    _text(principal, "UserId", user)
    _text(principal, "LogonType", "InteractiveToken")  # in the user's session, with a screen
    _text(principal, "RunLevel", "LeastPrivilege")
    settings = ET.SubElement(task, "Settings")
    for tag, value in (
        ("MultipleInstancesPolicy", "IgnoreNew"),
        ("DisallowStartIfOnBatteries", "false"),
        ("StopIfGoingOnBatteries", "false"),
        ("StartWhenAvailable", "true"),
        ("Enabled", "true"),
        ("ExecutionTimeLimit", "PT0S"),
    ):
        _text(settings, tag, value)
    restart = ET.SubElement(settings, "RestartOnFailure")
    _text(restart, "Interval", "PT1M")
    _text(restart, "Count", "255")
    command = ET.SubElement(ET.SubElement(task, "Actions", Context="Author"), "Exec")
    _text(command, "Command", program)
    if len(argv) > 1:
        _text(command, "Arguments", arguments)
    ET.indent(task)
    return '<?xml version="1.0" encoding="UTF-16"?>\n' + ET.tostring(task, "unicode") + "\n"


def _text(parent: ET.Element, tag: str, text: str) -> None:
    ET.SubElement(parent, tag).text = text


# --- where the entries live --------------------------------------------------------------


def environment(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def _home() -> Path:
    try:
        home = Path.home()
    except (RuntimeError, KeyError) as exc:
        raise AutostartError(f"cannot find the home directory: {exc}") from exc
    if not home.is_absolute():
        raise AutostartError("cannot find the home directory: set $HOME")
    return home


def systemd_unit_path(env: Mapping[str, str] | None = None) -> Path:
    """`$XDG_CONFIG_HOME/systemd/user/bucketreel-agent.service` (else under ~/.config)."""
    xdg = environment(env).get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else _home() / ".config"
    return base / "systemd" / "user" / UNIT_NAME


def wants_link(unit: Path) -> Path:
    """The link `systemctl --user enable` makes for `WantedBy=default.target`."""
    return unit.parent / "default.target.wants" / UNIT_NAME


def launch_agent_path() -> Path:
    return _home() / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"


def launch_agent_log() -> Path:
    return _home() / "Library" / "Logs" / f"{NAME}.log"


def windows_user(env: Mapping[str, str] | None = None) -> str:
    """`DOMAIN\\user` of this session, as a logon trigger names its user."""
    e = environment(env)
    name = e.get("USERNAME")
    if not name:
        try:
            name = getpass.getuser()
        except (OSError, KeyError, ImportError) as exc:
            raise AutostartError(f"cannot tell who this user is: {exc}") from exc
    domain = e.get("USERDOMAIN")
    return f"{domain}\\{name}" if domain and "\\" not in name else name
