"""`bucketreel-agent autostart` and the silent enrollment a fleet install needs.

The three entries are checked by the tools that read them, where they run here: the systemd
unit by Debian's `systemd-analyze verify` (in user mode) and, for the exact argv systemd
reads back, by `systemd --test` (which dumps every unit it loads); the LaunchAgent by
`plistlib`; the Task Scheduler task by ElementTree, its command line split as the Microsoft
C runtime splits one (`windows_split`, below: launchd and Task Scheduler do not run here).
Installing on Linux runs against a home in a temporary directory: with no `systemctl` on
PATH, with the real `systemctl` and no user bus (no user manager runs in this container),
and with a FAKE `systemctl` that records its calls and answers as a running user manager
would (the one thing that cannot run here). macOS and Windows run through
tests/agent/foreign_platform.py, with neither launchctl nor schtasks present.
"""

from __future__ import annotations

import json
import os
import plistlib
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from agent import autostart
from agent.autostart import AutostartError
from agent.logs import LOG_FORMAT_ENV
from tests.agent.fakebroker import FakeBroker
from tests.agent.test_agent_cli import ROOT, agent, agent_env
from tests.agent.test_agent_portable import FOREIGN

NS = {"t": autostart.TASK_NS}
TRICKY_ARGS = [
    "run", "two words", 'a "quoted" word', "back\\slash", "trailing\\", "100%", "%h",
    "$HOME", "${HOME}", "a;b", ";", "", "ünïcödé", "<&>", "'single'",
]
SYSTEMD_CANDIDATES = ("/lib/systemd/systemd", "/usr/lib/systemd/systemd")


# --- helpers ------------------------------------------------------------------------------


def windows_split(line: str) -> list[str]:
    """A command line split into argv as the Microsoft C runtime does (`parse_cmdline`):
    blanks separate outside quotes; 2n backslashes and a quote are n backslashes and a
    toggle, 2n+1 and a quote are n backslashes and a literal quote; `""` inside quotes is a
    literal quote; other backslashes are literal."""
    args: list[str] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in " \t":
            i += 1
        if i >= n:
            return args
        word: list[str] = []
        quoted = False
        while i < n and (quoted or line[i] not in " \t"):
            if line[i] == "\\":
                j = i
                while j < n and line[j] == "\\":
                    j += 1
                count = j - i
                if j < n and line[j] == '"':
                    word.append("\\" * (count // 2))
                    if count % 2:
                        word.append('"')
                        j += 1
                else:
                    word.append("\\" * count)
                i = j
            elif line[i] == '"':
                if quoted and i + 1 < n and line[i + 1] == '"':
                    word.append('"')
                    i += 2
                else:
                    quoted = not quoted
                    i += 1
            else:
                word.append(line[i])
                i += 1
        args.append("".join(word))


def test_windows_split_follows_the_c_runtime() -> None:
    assert windows_split(r'a "b c" d\e "f\"g" h\\"i j" k\\\"l ""') == [
        "a", "b c", "d\\e", 'f"g', "h\\i j", 'k\\"l', "",
    ]


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    assert found, (
        "systemd-analyze is missing: install Debian's `systemd` package "
        "(scripts/install.sh does: apt-get install systemd)"
    )
    return found


def verify(unit: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze --user verify UNIT`, as the user manager would load it."""
    runtime = tmp / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp),
        "XDG_RUNTIME_DIR": str(runtime), "LANG": "C.UTF-8",
    }
    return subprocess.run(
        [systemd_analyze(), "--user", "verify", str(unit)], env=env, capture_output=True,
        text=True, timeout=60, check=False,
    )


def assert_verified(unit: Path, tmp: Path) -> None:
    done = verify(unit, tmp)
    # verify exits 0 on settings it ignores with a warning: a clean unit prints nothing
    assert (done.returncode, done.stdout, done.stderr) == (0, "", ""), (
        f"systemd-analyze verify {unit} failed ({done.returncode}):\n{done.stdout}"
        f"{done.stderr}\n--- unit ---\n{unit.read_text()}"
    )


def systemd_reads(unit_text: str) -> list[str]:
    """The argv systemd stores for the unit's ExecStart (`systemd --test` dumps it, quoted
    for a shell: a shell reads it back); `$$` in an argument stays `$$` there and becomes `$`
    when the program starts."""
    binary = next((p for p in SYSTEMD_CANDIDATES if Path(p).is_file()), None)
    assert binary, "systemd itself is missing: install Debian's `systemd` package"
    # systemd refuses test mode as root: run it as nobody, on a directory nobody can read
    drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if (
        os.geteuid() == 0) else []
    units = Path(tempfile.mkdtemp(prefix="bucketreel-autostart-"))
    try:
        units.chmod(0o755)
        (units / autostart.UNIT_NAME).write_text(unit_text)
        (units / autostart.UNIT_NAME).chmod(0o644)
        done = subprocess.run(
            [*drop, binary, "--test", "--system", f"--unit={autostart.UNIT_NAME}", "--no-pager"],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(units),
                 "SYSTEMD_UNIT_PATH": f"{units}:", "LANG": "C.UTF-8"},
            capture_output=True, text=True, timeout=60, check=False,
        )
    finally:
        shutil.rmtree(units)
    lines = done.stdout.splitlines()
    start = lines.index(f"\t-> Unit {autostart.UNIT_NAME}:")
    for line in lines[start + 1:]:
        assert not line.startswith("\t-> Unit "), f"no ExecStart dumped:\n{done.stdout}"
        if line.strip().startswith("Command Line: "):
            return shell_words(line.strip().removeprefix("Command Line: "))
    raise AssertionError(f"systemd --test dumped no ExecStart:\n{done.stderr}")


def shell_words(line: str) -> list[str]:
    """The words a POSIX shell makes of `line` (which holds no newline, as systemd quotes)."""
    done = subprocess.run(["sh", "-c", "printf '%s\\n' " + line], capture_output=True,
                          text=True, timeout=30, check=True)
    return done.stdout.split("\n")[:-1]


def hermetic_env(home: Path, **extra: str) -> dict[str, str]:
    """An environment whose home, config and runtime directories are under `home`, with no
    session bus: nothing reaches this machine's own user manager or files."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(
        ("BUCKETREEL_AGENT_", "DBUS_", "XDG_"))}
    runtime = home / "run"
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_RUNTIME_DIR=str(runtime), **{LOG_FORMAT_ENV: "text"})
    env.update(extra)
    return env


def cli(home: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return agent(*args, home=home, env=hermetic_env(home, **extra))


def foreign(platform: str, home: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[
        str]:
    return subprocess.run(
        [sys.executable, str(FOREIGN), platform, *args], cwd=ROOT,
        env=hermetic_env(home, **extra), capture_output=True, text=True, timeout=60,
        check=False,
    )


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This process's HOME, XDG_CONFIG_HOME and XDG_RUNTIME_DIR in `tmp_path`, no bus."""
    for name, value in hermetic_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    for name in list(os.environ):
        if name.startswith(("DBUS_", "BUCKETREEL_AGENT_")):
            monkeypatch.delenv(name)
    return tmp_path


FAKE_SYSTEMCTL = """#!/bin/sh
# FAKE systemctl --user: a running user manager cannot run in this container
echo "$*" >> "{log}"
case "$*" in
  *is-active*) echo active ;;
  *sleep*) exec sleep 30 ;;
esac
exit 0
"""


@pytest.fixture
def fake_systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `systemctl` first on PATH that appends each call's arguments to the returned log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "systemctl.log"
    script = bin_dir / "systemctl"
    script.write_text(FAKE_SYSTEMCTL.format(log=log))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return log


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


# --- the command ----------------------------------------------------------------------------


def test_the_command_is_this_python_or_the_frozen_binary() -> None:
    assert autostart.agent_command() == [sys.executable, "-P", "-m", "agent", "run"]
    assert autostart.agent_command("/opt/b/python3", frozen=False) == [
        "/opt/b/python3", "-P", "-m", "agent", "run"]
    assert autostart.agent_command("C:\\Apps\\bucketreel-agent.exe", frozen=True) == [
        "C:\\Apps\\bucketreel-agent.exe", "run"]
    with pytest.raises(AutostartError, match="which program"):
        autostart.agent_command("")


def test_a_logon_task_starts_the_windowless_build_when_it_is_there(tmp_path: Path) -> None:
    console = tmp_path / "bucketreel-agent.exe"
    console.write_bytes(b"MZ")
    assert autostart.agent_command(str(console), frozen=True) == [str(console), "run"]
    windowless = tmp_path / "bucketreel-agent-w.exe"
    windowless.write_bytes(b"MZ")
    assert autostart.agent_command(str(console), frozen=True) == [str(windowless), "run"]
    assert autostart.agent_command(str(windowless), frozen=True) == [str(windowless), "run"]


# --- systemd --------------------------------------------------------------------------------


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    unit = tmp_path / autostart.UNIT_NAME
    unit.write_text(autostart.systemd_unit(autostart.agent_command()))
    assert_verified(unit, tmp_path)
    text = unit.read_text()
    for line in ("Type=simple", "Restart=on-failure", "RestartSec=10",
                 "WantedBy=default.target", "After=graphical-session.target",
                 f"ExecStart={sys.executable} -P -m agent run"):
        assert line in text.splitlines(), line


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above is worth something: a missing program, an unknown escape and a
    specifier are each caught."""
    for exec_start in ('/nonexistent/python run', f'{sys.executable} "\\q"',
                       f"{sys.executable} 50%x"):
        unit = tmp_path / autostart.UNIT_NAME
        unit.write_text(f"[Service]\nExecStart={exec_start}\n")
        done = verify(unit, tmp_path)
        assert done.returncode != 0 or done.stderr, exec_start


def test_systemd_reads_back_every_argument_and_a_path_with_blanks(tmp_path: Path) -> None:
    odd = tmp_path / "bucket reel 100% ü;"  # systemd refuses quotes and backslashes here
    odd.mkdir()
    (odd / "python").symlink_to(sys.executable)
    argv = [str(odd / "python"), *TRICKY_ARGS]
    text = autostart.systemd_unit(argv)
    unit = tmp_path / autostart.UNIT_NAME
    unit.write_text(text)
    assert_verified(unit, tmp_path)  # it found the program: its path was read back exactly
    assert systemd_reads(text) == [argv[0], *(a.replace("$", "$$") for a in argv[1:])]


def test_control_characters_are_escaped(tmp_path: Path) -> None:
    assert autostart.systemd_quote("a\tb\nc") == '"a\\x09b\\x0ac"'
    unit = tmp_path / autostart.UNIT_NAME
    unit.write_text(autostart.systemd_unit([sys.executable, "a\tb\nc", "\x7f"]))
    assert_verified(unit, tmp_path)


@pytest.mark.parametrize("program", [
    "python", "/opt/it's/python", '/opt/"q"/python', "/opt/a\\b/python", "/opt/$x/python",
    "/opt/../python", "/opt/a\nb/python",
])
def test_program_paths_systemd_cannot_start_are_refused(program: str) -> None:
    with pytest.raises(AutostartError, match="systemd"):
        autostart.systemd_unit([program, "run"])


def test_a_nul_or_no_command_is_refused() -> None:
    with pytest.raises(AutostartError, match="NUL"):
        autostart.systemd_unit([sys.executable, "a\0b"])
    for render in (autostart.systemd_unit, autostart.launch_agent_plist):
        with pytest.raises(AutostartError, match="no command"):
            render([])


def test_the_unit_goes_to_xdg_config_home_or_dot_config(tmp_path: Path) -> None:
    home = Path.home()
    assert autostart.systemd_unit_path({"XDG_CONFIG_HOME": str(tmp_path)}) == (
        tmp_path / "systemd" / "user" / "bucketreel-agent.service")
    for env in ({}, {"XDG_CONFIG_HOME": "relative/dir"}):  # a relative one is ignored (XDG)
        assert autostart.systemd_unit_path(env) == (
            home / ".config" / "systemd" / "user" / "bucketreel-agent.service")


def test_install_without_systemctl_writes_and_enables_the_unit(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = home / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    done = autostart.install(platform="linux")
    unit = home / ".config" / "systemd" / "user" / autostart.UNIT_NAME
    link = unit.parent / "default.target.wants" / autostart.UNIT_NAME
    assert done.installed
    assert done.where == str(unit)
    assert unit.read_text() == autostart.systemd_unit(autostart.agent_command())
    assert stat.S_IMODE(unit.stat().st_mode) in (0o600, 0o644)
    assert link.is_symlink()
    assert link.resolve() == unit
    assert done.command == f"{sys.executable} -P -m agent run"
    said = "\n".join(done.notes)
    assert "systemctl: not found" in said
    assert (f"systemctl --user daemon-reload && systemctl --user start "
            f"{autostart.UNIT_NAME}") in said
    assert not [p for p in unit.parent.iterdir() if p.name.endswith(".tmp")]

    shown = autostart.status(platform="linux")
    assert (shown.installed, shown.command) == (True, done.command)
    assert "enabled: starts at login" in shown.notes

    gone = autostart.remove(platform="linux")
    assert not gone.installed
    assert not unit.exists()
    assert not link.is_symlink()
    assert not autostart.status(platform="linux").installed
    assert autostart.remove(platform="linux").notes == ("nothing to remove",)


def test_install_with_systemctl_but_no_user_bus(home: Path) -> None:
    """The real systemctl: `enable` works on the files alone; the rest needs the manager."""
    assert shutil.which("systemctl"), "systemctl is missing: install Debian's `systemd`"
    done = autostart.install(platform="linux")
    unit = home / ".config" / "systemd" / "user" / autostart.UNIT_NAME
    link = unit.parent / "default.target.wants" / autostart.UNIT_NAME
    assert done.installed
    assert unit.is_file()
    assert link.is_symlink()
    assert link.resolve() == unit
    assert "enabled: starts at login" in done.notes
    said = "\n".join(done.notes)
    assert "systemd's user manager was not reached" in said
    assert "systemctl --user start bucketreel-agent.service" in said
    status = autostart.status(platform="linux")
    assert status.installed
    assert any(n.startswith("systemd's user manager was not reached") for n in status.notes)
    autostart.remove(platform="linux")
    assert not unit.exists()
    assert not link.is_symlink()


def test_install_and_remove_ask_the_user_manager(home: Path, fake_systemctl: Path) -> None:
    done = autostart.install(platform="linux")
    assert calls(fake_systemctl) == [
        "--user daemon-reload", f"--user enable {autostart.UNIT_NAME}",
        f"--user restart {autostart.UNIT_NAME}",
    ]
    assert done.notes[1:] == ("enabled: starts at login", "started")
    assert "systemd: active" in autostart.status(platform="linux").notes
    fake_systemctl.unlink()
    autostart.remove(platform="linux")
    assert calls(fake_systemctl) == [
        f"--user stop --no-block {autostart.UNIT_NAME}",
        f"--user disable {autostart.UNIT_NAME}", "--user daemon-reload",
    ]


def test_a_hanging_systemctl_is_cut_off(
    home: Path, fake_systemctl: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(autostart, "COMMAND_TIMEOUT", 0.5)
    monkeypatch.setattr(autostart, "UNIT_NAME", "sleep.service")  # the fake sleeps on it
    done = autostart.install(platform="linux")
    assert done.installed
    assert "no answer within 0.5 s" in "\n".join(done.notes)


def test_an_unwritable_place_is_a_clear_error(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = home / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(blocker))
    with pytest.raises(AutostartError, match=f"cannot write {blocker}"):
        autostart.install(platform="linux")


# --- launchd --------------------------------------------------------------------------------


def test_the_plist_parses_and_holds_the_command(tmp_path: Path) -> None:
    argv = ["/Applications/Bucket Reel.app/Contents/MacOS/bucketreel-agent", *TRICKY_ARGS]
    log = tmp_path / "Library" / "Logs" / "bucketreel-agent.log"
    job = plistlib.loads(autostart.launch_agent_plist(argv, log_path=log))
    assert job == {
        "Label": autostart.LAUNCHD_LABEL,
        "ProgramArguments": argv,
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "LimitLoadToSessionType": "Aqua",
        "ThrottleInterval": autostart.RESTART_SECONDS,
        "ExitTimeOut": autostart.STOP_TIMEOUT_SECONDS,
        "StandardOutPath": str(log),
        "StandardErrorPath": str(log),
    }
    assert "StandardErrorPath" not in plistlib.loads(autostart.launch_agent_plist(argv))
    with pytest.raises(AutostartError, match="property list"):
        autostart.launch_agent_plist(["/bin/x", "a\x01b"])


def test_macos_install_status_remove_there(tmp_path: Path) -> None:
    """As on a Mac without launchctl reachable: the plist is written, then removed."""
    shown = foreign("darwin", tmp_path, "autostart", "install", "--dry-run")
    assert shown.returncode == 0, shown.stderr
    plist = tmp_path / "Library" / "LaunchAgents" / f"{autostart.LAUNCHD_LABEL}.plist"
    assert f"would write {plist}" in shown.stderr
    job = plistlib.loads(shown.stdout.encode())
    assert job["ProgramArguments"] == [sys.executable, "-P", "-m", "agent", "run"]
    assert job["StandardErrorPath"] == str(tmp_path / "Library/Logs/bucketreel-agent.log")
    assert not plist.exists()

    before = foreign("darwin", tmp_path, "autostart", "status")
    assert (before.returncode, before.stdout) == (3, f"autostart: not installed: {plist}\n")
    done = foreign("darwin", tmp_path, "autostart", "install")
    assert done.returncode == 0, done.stderr
    assert plistlib.loads(plist.read_bytes()) == job
    assert "launchctl: not found: the agent starts at the next login" in done.stdout
    assert (tmp_path / "Library" / "Logs").is_dir()
    status = foreign("darwin", tmp_path, "autostart", "status")
    assert status.returncode == 0, status.stderr
    assert f"starts: {shlex.join(job['ProgramArguments'])}" in status.stdout
    removed = foreign("darwin", tmp_path, "autostart", "remove")
    assert removed.returncode == 0, removed.stderr
    assert not plist.exists()


def test_a_damaged_plist_is_shown_installed_without_its_command(home: Path) -> None:
    plist = home / "Library" / "LaunchAgents" / f"{autostart.LAUNCHD_LABEL}.plist"
    plist.parent.mkdir(parents=True)
    for damage in (b"garbage", b"<?xml version='1.0'?><plist><dict><key>a</key>"):
        plist.write_bytes(damage)
        shown = autostart.status(platform="darwin")
        assert (shown.installed, shown.where, shown.command) == (True, str(plist), None)


# --- Task Scheduler ---------------------------------------------------------------------------


def task(xml: str) -> ET.Element:
    root = ET.fromstring(xml.encode("utf-16"))  # noqa: S314 (our own XML, as schtasks gets it)
    assert root.tag == f"{{{autostart.TASK_NS}}}Task"
    return root


def test_the_task_xml_parses_and_holds_the_command() -> None:
    program = "C:\\Program Files\\Bucket Reel\\bucketreel-agent.exe"
    args = [a for a in TRICKY_ARGS if "%" not in a]
    xml = autostart.task_scheduler_xml([program, *args], "R&D\\Ann <admin>")
    assert xml.startswith('<?xml version="1.0" encoding="UTF-16"?>\n')
    root = task(xml)
    assert root.get("version") == "1.2"
    assert [child.tag.split("}")[1] for child in root] == [
        "RegistrationInfo", "Triggers", "Principals", "Settings", "Actions"]

    def text(path: str) -> str | None:
        return root.findtext(path, namespaces=NS)

    assert text("t:Triggers/t:LogonTrigger/t:UserId") == "R&D\\Ann <admin>"
    assert text("t:Triggers/t:LogonTrigger/t:Enabled") == "true"
    assert text("t:Triggers/t:LogonTrigger/t:Repetition/t:Interval") == "PT5M"
    assert text("t:Principals/t:Principal/t:UserId") == "R&D\\Ann <admin>"
    assert text("t:Principals/t:Principal/t:LogonType") == "InteractiveToken"
    assert text("t:Principals/t:Principal/t:RunLevel") == "LeastPrivilege"
    assert text("t:Settings/t:MultipleInstancesPolicy") == "IgnoreNew"
    assert text("t:Settings/t:ExecutionTimeLimit") == "PT0S"
    assert text("t:Settings/t:DisallowStartIfOnBatteries") == "false"
    assert text("t:Settings/t:StopIfGoingOnBatteries") == "false"
    assert text("t:Settings/t:RestartOnFailure/t:Interval") == "PT1M"
    assert text("t:Settings/t:RestartOnFailure/t:Count") == "255"
    actions = root.find("t:Actions", NS)
    assert actions is not None
    assert actions.get("Context") == "Author"
    command = text("t:Actions/t:Exec/t:Command")
    assert command == f'"{program}"'
    assert windows_split(command) == [program]
    assert windows_split(text("t:Actions/t:Exec/t:Arguments") or "") == args


def test_a_task_cannot_carry_what_windows_would_change() -> None:
    for argv in (["C:\\a.exe", "%PATH%"], ["C:\\a.exe", "50%", "x%"], ["C:\\%d%\\a.exe"]):
        with pytest.raises(AutostartError, match="%NAME%"):
            autostart.task_scheduler_xml(argv, "ann")
    assert "<Arguments>100%</Arguments>" in autostart.task_scheduler_xml(["C:\\a", "100%"], "a")
    with pytest.raises(AutostartError, match="control"):
        autostart.task_scheduler_xml(["C:\\a.exe", "a\nb"], "ann")
    with pytest.raises(AutostartError, match="no user"):
        autostart.task_scheduler_xml(["C:\\a.exe"], " ")


def test_the_windows_user_is_domain_and_name() -> None:
    assert autostart.windows_user({"USERNAME": "ann", "USERDOMAIN": "ACME"}) == "ACME\\ann"
    assert autostart.windows_user({"USERNAME": "ann"}) == "ann"


def test_windows_dry_run_and_install_there(tmp_path: Path) -> None:
    shown = foreign("win32", tmp_path, "autostart", "install", "--dry-run",
                    USERNAME="ann", USERDOMAIN="ACME")
    assert shown.returncode == 0, shown.stderr
    assert "would write Task Scheduler \\bucketreel-agent" in shown.stderr
    root = task(shown.stdout)
    assert root.findtext("t:Triggers/t:LogonTrigger/t:UserId", namespaces=NS) == "ACME\\ann"
    exec_ = root.find("t:Actions/t:Exec", NS)
    assert exec_ is not None
    assert windows_split(exec_.findtext("t:Command", "", NS)) == [sys.executable]
    assert windows_split(exec_.findtext("t:Arguments", "", NS)) == ["-P", "-m", "agent", "run"]
    # schtasks does not exist here: a clear error, exit 1
    for action in ("install", "status", "remove"):
        done = foreign("win32", tmp_path, "autostart", action, USERNAME="ann")
        assert done.returncode == 1, (action, done.stderr)
        assert "schtasks (Task Scheduler's command) not found" in done.stderr


def test_the_task_command_is_read_back_from_schtasks_output() -> None:
    xml = autostart.task_scheduler_xml(["C:\\a b\\agent.exe", "run"], "ann")
    assert autostart._task_command(xml.encode("utf-16")) == '"C:\\a b\\agent.exe" run'
    assert autostart._task_command(b"not xml") is None


# --- the command line ----------------------------------------------------------------------------


def test_cli_dry_run_status_install_remove(tmp_path: Path) -> None:
    unit = tmp_path / ".config" / "systemd" / "user" / autostart.UNIT_NAME
    shown = cli(tmp_path, "autostart", "install", "--dry-run")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == autostart.systemd_unit(autostart.agent_command())
    assert f"would write {unit}" in shown.stderr
    assert not (tmp_path / ".config").exists()

    before = cli(tmp_path, "autostart", "status")
    assert (before.returncode, before.stdout) == (3, f"autostart: not installed: {unit}\n")

    empty = tmp_path / "empty-bin"
    empty.mkdir()
    done = cli(tmp_path, "autostart", "install", PATH=str(empty))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:3] == [
        f"autostart: installed: {unit}", f"starts: {sys.executable} -P -m agent run",
        f"wrote {unit}",
    ]
    assert "systemctl --user daemon-reload && systemctl --user start" in done.stdout
    assert unit.is_file()

    status = cli(tmp_path, "autostart", "status", PATH=str(empty))
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[:3] == [
        f"autostart: installed: {unit}", f"starts: {sys.executable} -P -m agent run",
        "enabled: starts at login",
    ]
    removed = cli(tmp_path, "autostart", "remove", PATH=str(empty))
    assert removed.returncode == 0, removed.stderr
    assert f"removed {unit}" in removed.stdout
    assert not unit.exists()
    assert cli(tmp_path, "autostart", "status").returncode == 3


def test_cli_says_the_service_cannot_see_a_moved_home(tmp_path: Path) -> None:
    done = cli(tmp_path, "autostart", "install", BUCKETREEL_AGENT_HOME=str(tmp_path / "a"))
    assert done.returncode == 0, done.stderr
    assert "$BUCKETREEL_AGENT_HOME is set here, but the service does not see it" in done.stdout


def test_cli_autostart_needs_an_action(tmp_path: Path) -> None:
    done = cli(tmp_path, "autostart")
    assert done.returncode == 2
    assert "usage:" in done.stderr
    helped = cli(tmp_path, "autostart", "status", "--help")
    assert "Exit status 0 when installed, 3 when not." in " ".join(helped.stdout.split())


# --- silent enrollment ---------------------------------------------------------------------


def enroll_request_code(fake: FakeBroker) -> str:
    (request,) = fake.requests("POST", "/api/v1/devices/enroll")
    code: str = json.loads(request.body)["code"]
    return code


def test_enroll_takes_the_code_from_the_environment(
    fake_broker: FakeBroker, tmp_path: Path
) -> None:
    code = fake_broker.issue_code()
    done = agent("enroll", "--broker", fake_broker.url, home=tmp_path,
                 env=agent_env(tmp_path, BUCKETREEL_ENROLL_CODE=f" {code}\n"))
    assert done.returncode == 0, done.stderr
    assert enroll_request_code(fake_broker) == code
    assert code not in done.stdout + done.stderr


def test_a_code_flag_wins_over_the_environment(fake_broker: FakeBroker, tmp_path: Path) -> None:
    code = fake_broker.issue_code()
    done = agent("enroll", "--broker", fake_broker.url, "--code", code, home=tmp_path,
                 env=agent_env(tmp_path, BUCKETREEL_ENROLL_CODE="stale"))
    assert done.returncode == 0, done.stderr
    assert enroll_request_code(fake_broker) == code


def test_enroll_takes_the_code_from_a_private_file(
    fake_broker: FakeBroker, tmp_path: Path
) -> None:
    code = fake_broker.issue_code()
    code_file = tmp_path / "code"
    code_file.write_text(code + "\n")
    code_file.chmod(0o600)
    done = agent("enroll", "--broker", fake_broker.url, "--code-file", str(code_file),
                 home=tmp_path / "home")
    assert done.returncode == 0, done.stderr
    assert enroll_request_code(fake_broker) == code


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620])
def test_a_code_file_others_may_touch_is_refused(
    fake_broker: FakeBroker, tmp_path: Path, mode: int
) -> None:
    code_file = tmp_path / "code"
    code_file.write_text(fake_broker.issue_code())
    code_file.chmod(mode)
    done = agent("enroll", "--broker", fake_broker.url, "--code-file", str(code_file),
                 home=tmp_path / "home")
    assert done.returncode == 1
    assert f"{code_file} has mode {mode:04o}; it holds an enrollment code" in done.stderr
    assert "chmod 600" in done.stderr
    assert fake_broker.requests("POST", "/api/v1/devices/enroll") == []
    assert not (tmp_path / "home" / "device.json").exists()


def test_a_missing_or_linked_code_file_is_refused(
    fake_broker: FakeBroker, tmp_path: Path
) -> None:
    missing = tmp_path / "missing"
    done = agent("enroll", "--broker", fake_broker.url, "--code-file", str(missing),
                 home=tmp_path / "home")
    assert done.returncode == 1
    assert f"{missing} does not exist" in done.stderr
    real = tmp_path / "real"
    real.write_text(fake_broker.issue_code())
    real.chmod(0o600)
    link = tmp_path / "link"
    link.symlink_to(real)
    done = agent("enroll", "--broker", fake_broker.url, "--code-file", str(link),
                 home=tmp_path / "home")
    assert done.returncode == 1
    assert f"cannot open {link}" in done.stderr
    assert fake_broker.requests("POST", "/api/v1/devices/enroll") == []


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_a_code_file_of_another_user_is_refused(fake_broker: FakeBroker, tmp_path: Path) -> None:
    code_file = tmp_path / "code"
    code_file.write_text(fake_broker.issue_code())
    code_file.chmod(0o600)
    os.chown(code_file, 65534, 65534)
    done = agent("enroll", "--broker", fake_broker.url, "--code-file", str(code_file),
                 home=tmp_path / "home")
    assert done.returncode == 1
    assert "belongs to another user" in done.stderr


def test_enroll_without_any_code_says_how(tmp_path: Path) -> None:
    done = agent("enroll", "--broker", "http://127.0.0.1:9", home=tmp_path,
                 env={k: v for k, v in agent_env(tmp_path).items()
                      if k != "BUCKETREEL_ENROLL_CODE"})
    assert done.returncode == 1
    assert "--code CODE, --code-file PATH or --email EMAIL, or $BUCKETREEL_ENROLL_CODE" in (
        done.stderr)
    both = agent("enroll", "--broker", "http://127.0.0.1:9", "--code", "c", "--code-file",
                 str(tmp_path / "f"), home=tmp_path)
    assert both.returncode == 2
    assert "not allowed with argument" in both.stderr
