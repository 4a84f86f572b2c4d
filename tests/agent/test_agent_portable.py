"""The agent on Windows and macOS, proven as far as Linux allows.

1. No agent module outside `agent/platform/` names a POSIX-only or Windows-only API (over the
   AST, so a name in a comment does not count and an alias does).
2. Every module of `agent` and `shared` (the customer's vault, `shared.vault`, aside: no part of
   the agent) imports with `sys.platform` set to `win32` and to
   `darwin` and the POSIX-only modules blocked, and the CLI's `--help`, `enroll` and `status`
   run that way (tests/agent/foreign_platform.py).
`mypy --platform win32` and `--platform darwin` run in scripts/test.sh.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.agent.fakebroker import FakeBroker
from tests.agent.test_agent_cli import ROOT, agent_env
from tests.agent.test_agent_instance import lock_held_elsewhere

AGENT = ROOT / "agent"
PLATFORM = AGENT / "platform"
FOREIGN = Path(__file__).with_name("foreign_platform.py")

FORBIDDEN_MODULES = {
    "fcntl", "termios", "tty", "pty", "pwd", "grp", "resource", "syslog", "posix", "ctypes",
    "msvcrt", "winreg", "_winapi", "winsound", "nt",
}
FORBIDDEN_ATTRIBUTES = {
    "os": {
        "O_NOFOLLOW", "O_CLOEXEC", "O_DIRECTORY", "O_BINARY", "O_NOINHERIT", "fchmod", "chmod",
        "lchmod", "fchown", "chown", "lchown", "geteuid", "getuid", "getgid", "getegid",
        "pread", "pwrite", "killpg", "getpgid", "setsid", "fork", "statvfs", "sync", "uname",
        "rename", "mkfifo", "getloadavg", "sched_getaffinity", "startfile", "name",
    },
    "signal": {
        "SIGHUP", "SIGKILL", "SIGUSR1", "SIGUSR2", "SIGQUIT", "SIGALRM", "SIGCHLD", "SIGPIPE",
        "SIGBREAK", "CTRL_C_EVENT", "CTRL_BREAK_EVENT", "alarm", "setitimer", "pthread_kill",
        "pthread_sigmask", "siginterrupt",
    },
    "sys": {"platform", "getwindowsversion"},
}
WHY = (
    "names an OS-specific API outside agent/platform/: put it behind a function there "
    "(agent.platform.files, .lock, .dirs, .stop, .memory)"
)


def violations(source: str, filename: str) -> list[str]:
    """Each use of a forbidden module or attribute in `source`, as `file:line: what`."""
    tree = ast.parse(source, filename)
    aliases: dict[str, str] = {}  # local name -> module it stands for (import os as o)
    found: list[str] = []

    def flag(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{getattr(node, 'lineno', 0)}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top in FORBIDDEN_MODULES:
                    flag(node, f"import {alias.name}")
                aliases[alias.asname or top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            top = node.module.split(".")[0]
            if top in FORBIDDEN_MODULES:
                flag(node, f"from {node.module} import ...")
            for alias in node.names:
                if alias.name in FORBIDDEN_ATTRIBUTES.get(top, ()):
                    flag(node, f"from {top} import {alias.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            module = aliases.get(node.value.id)
            if module and node.attr in FORBIDDEN_ATTRIBUTES.get(module, ()):
                flag(node, f"{module}.{node.attr}")
        elif (  # getattr(os, "O_NOFOLLOW", 0) and hasattr(signal, "SIGBREAK")
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"getattr", "hasattr"}
            and len(node.args) >= 2
            and isinstance(node.args[0], ast.Name)
            and isinstance(node.args[1], ast.Constant)
        ):
            module = aliases.get(node.args[0].id)
            if module and node.args[1].value in FORBIDDEN_ATTRIBUTES.get(module, ()):
                flag(node, f"{node.func.id}({module}, {node.args[1].value!r})")
    return found


def test_the_checker_catches_what_it_should() -> None:
    bad = (
        "import fcntl\nimport os as o\nimport signal\nfrom os import geteuid\n"
        "from msvcrt import locking\nimport sys\n"
        "o.open('x', o.O_NOFOLLOW)\nos.rename\nsignal.SIGHUP\n"
        "getattr(o, 'O_CLOEXEC', 0)\nhasattr(signal, 'SIGBREAK')\nsys.platform\n"
    )
    found = violations(bad, "bad.py")
    assert sorted(f.split(": ", 1)[1] for f in found) == sorted([
        "import fcntl",
        "from os import geteuid",
        "from msvcrt import ...",
        "os.O_NOFOLLOW",
        "signal.SIGHUP",
        "sys.platform",
        "getattr(os, 'O_CLOEXEC')",
        "hasattr(signal, 'SIGBREAK')",
    ])
    assert "bad.py:7: os.O_NOFOLLOW" in found  # through the alias, with its line
    fine = "import os\nimport signal\nos.replace('a', 'b')\nsignal.SIGTERM\nos.open\n"
    assert violations(fine, "fine.py") == []


def test_no_os_specific_name_outside_the_platform_layer() -> None:
    modules = [p for p in AGENT.rglob("*.py") if PLATFORM not in p.parents]
    assert len(modules) > 15, "the agent's modules were not found"
    found = [
        v for path in sorted(modules)
        for v in violations(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert found == [], f"{WHY}:\n" + "\n".join(found)


def foreign(
    platform: str, *argv: str, home: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(FOREIGN), platform, *argv],
        cwd=ROOT, env=agent_env(home), capture_output=True, text=True, timeout=timeout,
        check=False,
    )


PLATFORMS = ["win32", "darwin"]


def module_names(package: str) -> set[str]:
    root = ROOT / package
    names = set()
    for path in root.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if len(parts) > 1:
            names.add(".".join(parts))
    return names


@pytest.mark.parametrize("platform", PLATFORMS)
def test_every_module_imports_there(platform: str, tmp_path: Path) -> None:
    done = foreign(platform, home=tmp_path)
    assert done.returncode == 0, done.stderr
    # the customer's vault is no part of the agent (its build leaves it out)
    shipped = {n for n in module_names("shared") if n.split(".")[:2] != ["shared", "vault"]}
    assert set(done.stdout.split()) == module_names("agent") | shipped


@pytest.mark.parametrize("platform", PLATFORMS)
def test_help_enroll_and_status_run_there(
    platform: str, fake_broker: FakeBroker, tmp_path: Path
) -> None:
    shown = foreign(platform, "--help", home=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "enroll" in shown.stdout
    assert "status" in shown.stdout
    for command in ("run", "enroll", "status"):
        sub = foreign(platform, command, "--help", home=tmp_path)
        assert sub.returncode == 0, sub.stderr
        assert "usage:" in sub.stdout

    before = foreign(platform, "status", home=tmp_path)
    assert (before.returncode, before.stdout) == (3, "agent: not running\n"), before.stderr

    enrolled = foreign(
        platform, "enroll", "--broker", fake_broker.url, "--code", fake_broker.issue_code(),
        home=tmp_path,
    )
    assert enrolled.returncode == 0, enrolled.stderr
    credential = json.loads((tmp_path / "device.json").read_text())
    assert credential["device_id"]
    assert (tmp_path / "device.key").is_file()
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    # a status file left by a run, and an agent holding the lock: both are read there
    (tmp_path / "status.json").write_text(json.dumps({
        "state": "recording", "pid": 4242, "updated_at": "2026-12-03T09:00:00+00:00",
        "recording_id": "r-1", "uploaded": 7, "gaps": [3],
    }))
    with lock_held_elsewhere(tmp_path):
        status = foreign(platform, "status", home=tmp_path)
        assert status.returncode == 0, status.stderr
        assert status.stdout.splitlines()[:2] == [
            "agent: running (pid 4242), recording", "recording: r-1",
        ]
        assert "gaps: 3" in status.stdout
        as_json = foreign(platform, "status", "--json", home=tmp_path)
        assert json.loads(as_json.stdout)["running"] is True
