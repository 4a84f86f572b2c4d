"""The PyInstaller spec and build/build_agent.py, without building: what each OS gets.

The spec is executed as PyInstaller would execute it, with `sys.platform` set to each OS
and PyInstaller's Analysis/PYZ/EXE replaced by recorders; PyInstaller's hook helpers
(`collect_submodules` ...) are the real ones, run on this machine. The real build, on Linux,
is tests/packaging/test_binary.py; on Windows and macOS, .github/workflows/agent.yml.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build"
SPEC = BUILD / "bucketreel-agent.spec"
NAME = "bucketreel-agent"
PLATFORMS = ("linux", "win32", "darwin")


def load_build_script() -> ModuleType:
    path = BUILD / "build_agent.py"
    found = importlib.util.spec_from_file_location("bucketreel_build_agent", path)
    assert found is not None
    assert found.loader is not None
    module = importlib.util.module_from_spec(found)
    sys.modules[found.name] = module
    found.loader.exec_module(module)
    return module


build_agent = load_build_script()


@dataclass
class Recorded:
    analysis: dict[str, Any] = field(default_factory=dict)
    exes: list[dict[str, Any]] = field(default_factory=list)


class FakeAnalysis:
    def __init__(self, recorded: Recorded, scripts: list[str], **kwargs: Any) -> None:
        recorded.analysis = {"scripts": scripts, **kwargs}
        self.pure = ["pure"]
        self.scripts = ["scripts"]
        self.binaries = kwargs["binaries"]
        self.datas = kwargs["datas"]


def run_spec(platform: str, monkeypatch: pytest.MonkeyPatch) -> Recorded:
    import PyInstaller.utils.hooks  # noqa: F401  (loaded under the real platform first)

    recorded = Recorded()

    def exe(*args: Any, **kwargs: Any) -> dict[str, Any]:
        recorded.exes.append({"args": args, **kwargs})
        return kwargs

    namespace: dict[str, Any] = {
        "__name__": "__main__",
        "SPECPATH": str(BUILD),
        "Analysis": lambda scripts, **kw: FakeAnalysis(recorded, scripts, **kw),
        "PYZ": lambda pure: ("PYZ", tuple(pure)),
        "EXE": exe,
    }
    code = compile(SPEC.read_text(), str(SPEC), "exec")
    with monkeypatch.context() as patch:
        patch.setattr(sys, "platform", platform)
        exec(code, namespace)  # noqa: S102  (our own spec, as PyInstaller runs it)
    return recorded


@pytest.mark.parametrize("platform", PLATFORMS)
def test_the_spec_builds_what_build_agent_lists(
    platform: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = run_spec(platform, monkeypatch)

    wanted = build_agent.executables(platform)
    assert [(e["name"], e["console"]) for e in recorded.exes] == [
        (exe.name, exe.console) for exe in wanted
    ]
    for built in recorded.exes:  # one file each: everything goes into the EXE itself
        assert built["upx"] is False
        assert built["strip"] is False
        assert built["args"][2] is recorded.analysis["binaries"]
        assert built["args"][3] is recorded.analysis["datas"]
        assert built["codesign_identity"] is None  # unset here; only macOS would read it


def test_windows_gets_a_console_and_a_windowless_program() -> None:
    assert [(e.file_name("win32"), e.console) for e in build_agent.executables("win32")] == [
        (f"{NAME}.exe", True), (f"{NAME}-w.exe", False),
    ]
    for platform in ("linux", "darwin"):
        assert [(e.file_name(platform), e.console) for e in build_agent.executables(platform)] == [
            (NAME, True),
        ]
    dist = Path("dist")
    assert build_agent.binary_paths(dist, "win32") == [dist / f"{NAME}.exe", dist / f"{NAME}-w.exe"]
    assert build_agent.binary_paths(dist, "linux") == [dist / NAME]


@pytest.mark.parametrize("platform", PLATFORMS)
def test_every_platform_module_is_in_every_build(
    platform: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hidden = set(run_spec(platform, monkeypatch).analysis["hiddenimports"])

    on_disk = {
        f"agent.platform.{path.stem}"
        for path in (ROOT / "agent" / "platform").glob("*.py") if path.stem != "__init__"
    }
    assert on_disk <= hidden, on_disk - hidden
    assert {
        "agent.platform.linux", "agent.platform.macos", "agent.platform.windows",
        "agent.platform.winstop",
    } <= hidden
    assert "agent.__main__" in hidden
    assert "shared.wire" in hidden
    assert not {name for name in hidden if name.split(".")[0] in ("broker", "tests")}


def test_the_server_stack_stays_out(monkeypatch: pytest.MonkeyPatch) -> None:
    excludes = set(run_spec("linux", monkeypatch).analysis["excludes"])

    assert {"broker", "tests", "aiohttp", "sqlalchemy", "boto3", "numpy", "pytest"} <= excludes


def test_sizes_are_reported_in_mib() -> None:
    assert build_agent.human_size(63_870_368) == "60.9 MiB (63870368 bytes)"
