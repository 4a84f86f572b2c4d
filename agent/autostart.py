"""Start the agent at login and again when it fails: `bucketreel-agent autostart`.

Each OS gets one per-user entry, starting the same command (`agent_command()`: this Python
with `-P -m agent run`, or the frozen binary with `run`):

- Linux (systemd): the user unit `$XDG_CONFIG_HOME/systemd/user/bucketreel-agent.service`
  (`~/.config/systemd/user/...`), wanted by `default.target`, ordered after
  `graphical-session.target`, `Restart=on-failure`;
- macOS: the LaunchAgent `~/Library/LaunchAgents/com.bucketreel.agent.plist`, `RunAtLoad`,
  kept alive while it exits unsuccessfully, loaded into `gui/<uid>`;
- Windows: the Task Scheduler task `\\bucketreel-agent` (schema 1.2): a logon trigger for
  this user, repeated every 5 minutes (ignored while the agent runs, so a dead agent is back
  within 5 minutes: Task Scheduler's own restart covers a failed start, not a crash), restart
  on failure, no time limit, kept on battery.

The renderers (`systemd_unit`, `launch_agent_plist`, `task_scheduler_xml`) are pure, in
`agent.autostart_entries`.
`install`, `remove` and `status` write or read the entry and ask the service manager
(`systemctl --user`, `launchctl`, `schtasks`), each call bounded by `COMMAND_TIMEOUT`. A
manager that cannot be reached (no `systemctl`, no user bus, no GUI session) does not undo
an install: the entry is written, and the notes say what to run.
"""

from __future__ import annotations

import contextlib
import os
import plistlib
import shlex
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.parsers.expat import ExpatError

from agent import paths
from agent.autostart_entries import (
    DESCRIPTION,
    LAUNCHD_LABEL,
    NAME,
    RECHECK_MINUTES,
    RESTART_SECONDS,
    STOP_TIMEOUT_SECONDS,
    TASK_NAME,
    TASK_NS,
    UNIT_NAME,
    AutostartError,
    environment,
    launch_agent_log,
    launch_agent_path,
    launch_agent_plist,
    systemd_quote,
    systemd_unit,
    systemd_unit_path,
    task_scheduler_xml,
    wants_link,
    windows_user,
)

__all__ = [
    "COMMAND_TIMEOUT", "DESCRIPTION", "LAUNCHD_LABEL", "NAME", "RECHECK_MINUTES",
    "RESTART_SECONDS", "STOP_TIMEOUT_SECONDS", "TASK_NAME", "TASK_NS", "UNIT_NAME",
    "AutostartError", "Report", "agent_command", "install", "launch_agent_log",
    "launch_agent_path", "launch_agent_plist", "preview", "remove", "status", "systemd_quote",
    "systemd_unit", "systemd_unit_path", "task_scheduler_xml", "windowless", "windows_user",
]
from agent.platform import service
from agent.platform.files import write_atomic

COMMAND_TIMEOUT = 30.0  # seconds, for each call of systemctl, launchctl or schtasks


@dataclass(frozen=True, slots=True)
class Report:
    """What `install`, `remove` or `status` found or did."""

    installed: bool
    where: str  # the file, or the task
    command: str | None = None  # what it starts, as written in the entry
    notes: tuple[str, ...] = ()


def agent_command(executable: str | None = None, *, frozen: bool | None = None) -> list[str]:
    """The command line the entry starts: this agent's `run`.

    Not frozen: `python -P -m agent run`; `-P` keeps the working directory (the home
    directory, or `/`, or `System32`, depending on the service manager) off `sys.path`, so
    nothing there named `agent` can stand in for the installed package.
    """
    program = sys.executable if executable is None else executable
    if not program:
        raise AutostartError("cannot tell which program this agent is (no sys.executable)")
    if frozen is None:
        frozen = bool(getattr(sys, "frozen", False))
    if not frozen:
        return [program, "-P", "-m", "agent", "run"]
    return [windowless(program), "run"]


WINDOWLESS_SUFFIX = "-w.exe"


def windowless(program: str) -> str:
    """On Windows the build ships `bucketreel-agent-w.exe` beside the console program: the
    same agent without a console window, which a logon task should start (a console window
    would open at every logon, and closing it would stop the recording)."""
    if not program.lower().endswith(".exe") or program.lower().endswith(WINDOWLESS_SUFFIX):
        return program
    sibling = program[: -len(".exe")] + WINDOWLESS_SUFFIX
    return sibling if os.path.isfile(sibling) else program



def _kind(platform: str | None) -> str:
    name = service.system() if platform is None else platform
    if name == "win32":
        return "windows"
    if name == "darwin":
        return "macos"
    return "systemd"


# --- install, remove, status -------------------------------------------------------------


def preview(
    *, platform: str | None = None, argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[str, str]:
    """(where it would go, the entry's text): what `install` would write, written nowhere."""
    argv = agent_command() if argv is None else argv
    kind = _kind(platform)
    if kind == "windows":
        return f"Task Scheduler \\{TASK_NAME}", task_scheduler_xml(argv, windows_user(env))
    if kind == "macos":
        text = launch_agent_plist(argv, log_path=launch_agent_log()).decode()
        return str(launch_agent_path()), text
    return str(systemd_unit_path(env)), systemd_unit(argv)


def install(
    *, platform: str | None = None, argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Report:
    """Write the entry (replacing an older one), register it, and start the agent."""
    argv = agent_command() if argv is None else argv
    e = environment(env)
    kind = _kind(platform)
    if kind == "windows":
        report = _task_install(argv, e)
    elif kind == "macos":
        report = _launchd_install(argv)
    else:
        report = _systemd_install(argv, e)
    unseen = [
        f"note: ${name} is set here, but the service does not see it: it uses the "
        "default directories" for name in (paths.HOME_ENV, paths.SPOOL_ENV) if e.get(name)
    ]
    return Report(report.installed, report.where, report.command, (*report.notes, *unseen))


def remove(*, platform: str | None = None, env: Mapping[str, str] | None = None) -> Report:
    """Stop the agent the entry started (where that is graceful) and remove the entry."""
    kind = _kind(platform)
    if kind == "windows":
        return _task_remove()
    if kind == "macos":
        return _launchd_remove()
    return _systemd_remove(environment(env))


def status(*, platform: str | None = None, env: Mapping[str, str] | None = None) -> Report:
    """Whether the entry is there, what it starts, and what the service manager says."""
    kind = _kind(platform)
    if kind == "windows":
        return _task_status()
    if kind == "macos":
        return _launchd_status()
    return _systemd_status(environment(env))


@dataclass(frozen=True, slots=True)
class _Ran:
    ok: bool
    output: str  # the first line it printed, or why it did not run
    stdout: bytes = b""
    missing: bool = False  # the program is not installed


def _run(argv: Sequence[str]) -> _Ran:
    """Run a service manager's command; never raises (a missing program is a `_Ran`)."""
    timeout = COMMAND_TIMEOUT
    program = shutil.which(argv[0])
    if program is None:
        return _Ran(False, f"{argv[0]}: not found", missing=True)
    try:
        done = subprocess.run(
            [program, *argv[1:]], stdin=subprocess.DEVNULL, capture_output=True,
            timeout=timeout, check=False,
        )
    except subprocess.TimeoutExpired:
        return _Ran(False, f"{' '.join(argv)}: no answer within {timeout:g} s")
    except OSError as exc:
        return _Ran(False, f"cannot run {argv[0]}: {exc.strerror or exc}")
    lines = [
        line.strip() for line in (done.stderr + b"\n" + done.stdout).decode(
            errors="replace").splitlines() if line.strip()
    ]
    said = lines[0][:300] if lines else f"exit status {done.returncode}"
    return _Ran(done.returncode == 0, said, done.stdout)


def _write(path: Path, payload: bytes) -> None:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(path, payload, durable=True)
    except OSError as exc:
        raise AutostartError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _unlink(path: Path) -> bool:
    """Remove `path` (a file or a link); whether there was one."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise AutostartError(f"cannot remove {path}: {exc.strerror or exc}") from exc
    return True


# systemd (Linux)


def _systemctl(*args: str) -> _Ran:
    return _run(["systemctl", "--user", *args])


def _systemd_install(argv: Sequence[str], env: Mapping[str, str]) -> Report:
    path = systemd_unit_path(env)
    _write(path, systemd_unit(argv).encode())
    notes = [f"wrote {path}"]
    reload = _systemctl("daemon-reload")
    enable = _systemctl("enable", UNIT_NAME)  # works on the files even without a manager
    link = wants_link(path)
    if enable.ok:
        notes.append("enabled: starts at login")
    else:  # make the link enable makes: the user manager starts the unit at the next login
        try:
            link.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            _unlink(link)
            link.symlink_to(path)
        except OSError as exc:
            raise AutostartError(f"cannot enable the unit ({link}): {exc.strerror or exc}; "
                                 f"systemctl said: {enable.output}") from exc
        notes.append(f"enabled by the link {link} ({enable.output}): starts at login")
    if reload.ok:
        started = _systemctl("restart", UNIT_NAME)
        notes.append("started" if started.ok else f"not started now: {started.output}")
    else:
        notes.append(
            f"systemd's user manager was not reached ({reload.output}): to start the agent "
            f"before the next login, run in the desktop session: systemctl --user "
            f"daemon-reload && systemctl --user start {UNIT_NAME}"
        )
    return Report(True, str(path), _exec_start(path), tuple(notes))


def _systemd_remove(env: Mapping[str, str]) -> Report:
    path = systemd_unit_path(env)
    link = wants_link(path)
    if not (path.exists() or link.is_symlink()):
        return Report(False, str(path), None, ("nothing to remove",))
    stopped = _systemctl("stop", "--no-block", UNIT_NAME)  # SIGTERM: the agent drains
    _systemctl("disable", UNIT_NAME)
    _unlink(link)
    _unlink(path)
    _systemctl("daemon-reload")
    notes = [f"removed {path}"]
    notes.append(
        "stopping the agent it started" if stopped.ok else
        f"systemd's user manager was not reached ({stopped.output}): an agent it started "
        "runs until logout"
    )
    return Report(False, str(path), None, tuple(notes))


def _exec_start(path: Path) -> str | None:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("ExecStart="):
            return line.removeprefix("ExecStart=")
    return None


def _systemd_status(env: Mapping[str, str]) -> Report:
    path = systemd_unit_path(env)
    if not path.is_file():
        return Report(False, str(path))
    link = wants_link(path)
    notes = ["enabled: starts at login" if link.exists() else
             f"not enabled: run systemctl --user enable {UNIT_NAME}"]
    active = _systemctl("is-active", UNIT_NAME)
    state = active.stdout.decode(errors="replace").strip()
    notes.append(f"systemd: {state}" if state else
                 f"systemd's user manager was not reached ({active.output})")
    return Report(True, str(path), _exec_start(path), tuple(notes))


# launchd (macOS)


def _launchd_install(argv: Sequence[str]) -> Report:
    path = launch_agent_path()
    log_path = launch_agent_log()
    _write(path, launch_agent_plist(argv, log_path=log_path))
    with contextlib.suppress(OSError):  # launchd cannot start a job whose log it cannot open
        log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    notes = [f"wrote {path}", f"log: {log_path}"]
    if shutil.which("launchctl") is None:
        notes.append("launchctl: not found: the agent starts at the next login")
    else:
        domain = service.launchd_gui_domain()
        _run(["launchctl", "bootout", f"{domain}/{LAUNCHD_LABEL}"])  # an older one, if loaded
        loaded = _run(["launchctl", "bootstrap", domain, str(path)])
        notes.append("loaded and started" if loaded.ok else
                     f"launchd did not load it ({loaded.output}): the agent starts at the "
                     f"next login, or now with: launchctl bootstrap {domain} {path}")
    return Report(True, str(path), shlex.join(argv), tuple(notes))


def _launchd_remove() -> Report:
    path = launch_agent_path()
    if not path.exists():
        return Report(False, str(path), None, ("nothing to remove",))
    notes = [f"removed {path}"]
    if shutil.which("launchctl") is not None:
        out = _run(["launchctl", "bootout", f"{service.launchd_gui_domain()}/{LAUNCHD_LABEL}"])
        notes.append("stopped the agent it started" if out.ok else
                     f"launchd did not unload it ({out.output})")
    _unlink(path)
    return Report(False, str(path), None, tuple(notes))


def _launchd_status() -> Report:
    path = launch_agent_path()
    if not path.is_file():
        return Report(False, str(path))
    command = None
    try:
        job = plistlib.loads(path.read_bytes())
        words = job.get("ProgramArguments") if isinstance(job, dict) else None
        if isinstance(words, list) and all(isinstance(w, str) for w in words):
            command = shlex.join(words)
    except (OSError, ValueError, ExpatError):  # not readable: shown without its command
        pass
    notes: list[str] = []
    if shutil.which("launchctl") is not None:
        listed = _run(["launchctl", "print", f"{service.launchd_gui_domain()}/{LAUNCHD_LABEL}"])
        notes.append("launchd: loaded" if listed.ok else "launchd: not loaded")
    return Report(True, str(path), command, tuple(notes))


# Task Scheduler (Windows)


def _task_install(argv: Sequence[str], env: Mapping[str, str]) -> Report:
    xml = task_scheduler_xml(argv, windows_user(env))
    try:
        fd, name = tempfile.mkstemp(prefix=f"{NAME}-", suffix=".xml")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(xml.encode("utf-16"))  # with its byte order mark, as schtasks reads
            made = _schtasks("/Create", "/TN", TASK_NAME, "/XML", name, "/F")
        finally:
            with contextlib.suppress(OSError):
                os.unlink(name)
    except OSError as exc:
        raise AutostartError(f"cannot write the task's file: {exc.strerror or exc}") from exc
    if not made.ok:
        raise AutostartError(f"Task Scheduler refused the task: {made.output}")
    started = _schtasks("/Run", "/TN", TASK_NAME)
    notes = ["registered: starts at logon", "started" if started.ok else
             f"not started now ({started.output}): it starts at the next logon"]
    return Report(True, f"Task Scheduler \\{TASK_NAME}", subprocess.list2cmdline(argv),
                  tuple(notes))


def _schtasks(*args: str) -> _Ran:
    ran = _run(["schtasks", *args])
    if ran.missing:
        raise AutostartError("schtasks (Task Scheduler's command) not found")
    return ran


def _task_query() -> _Ran:
    return _schtasks("/Query", "/TN", TASK_NAME, "/XML")


def _task_command(xml: bytes) -> str | None:
    """The command line of the task `schtasks /Query /XML` printed, when it can be read."""
    utf16 = xml.startswith((b"\xff\xfe", b"\xfe\xff"))
    text = xml.decode("utf-16" if utf16 else "utf-8", errors="replace")
    try:
        root = ET.fromstring(text.strip())  # noqa: S314 (schtasks, this machine's own tool)
    except ET.ParseError:
        return None
    ns = {"t": TASK_NS}
    command = root.findtext("t:Actions/t:Exec/t:Command", namespaces=ns)
    if command is None:
        return None
    arguments = root.findtext("t:Actions/t:Exec/t:Arguments", default="", namespaces=ns)
    return f"{command} {arguments}".strip()


def _task_remove() -> Report:
    where = f"Task Scheduler \\{TASK_NAME}"
    if not _task_query().ok:
        return Report(False, where, None, ("nothing to remove",))
    deleted = _schtasks("/Delete", "/TN", TASK_NAME, "/F")
    if not deleted.ok:
        raise AutostartError(f"Task Scheduler did not delete the task: {deleted.output}")
    return Report(False, where, None, (
        "removed; an agent it started runs until logout (or Ctrl+Break in its window)",
    ))


def _task_status() -> Report:
    where = f"Task Scheduler \\{TASK_NAME}"
    found = _task_query()
    if not found.ok:
        return Report(False, where)
    return Report(True, where, _task_command(found.stdout), ("starts at logon",))
