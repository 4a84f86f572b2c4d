"""Build the one-file `bucketreel-agent` binary with PyInstaller, then report its size.

    python build/build_agent.py [--dist DIR] [--work DIR] [--cold-start N]

Builds `build/bucketreel-agent.spec` on the OS it runs on (PyInstaller does not
cross-compile) into `build/dist/` (work files in `build/work/`, both gitignored):

    Linux, macOS   bucketreel-agent         one file, a console program (no macOS .app)
    Windows        bucketreel-agent.exe     one file, console: for a terminal
                   bucketreel-agent-w.exe   the same program without a console window, for
                                            autostart (Task Scheduler) at logon

`executables()` below is that table; the spec builds exactly what it lists. Prints one
`built: PATH` line per output with its size; with `--cold-start N` (default 5) it also runs
the console binary's `--version` N times and prints the wall times: a one-file binary unpacks
itself into a temp dir on every start, so that is its cold start.
Exit status: 0 built, 1 the build or the check failed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SPEC = HERE / "bucketreel-agent.spec"
NAME = "bucketreel-agent"


class BuildError(RuntimeError):
    """The build or its smoke check failed; the message says how."""


@dataclass(frozen=True)
class Executable:
    """One program the spec builds: its name (without `.exe`) and whether it has a console."""

    name: str
    console: bool

    def file_name(self, platform: str = sys.platform) -> str:
        return f"{self.name}.exe" if platform == "win32" else self.name


def executables(platform: str = sys.platform) -> tuple[Executable, ...]:
    """What the spec builds on `platform` (a `sys.platform` value); the console one first.

    Windows gets a second, windowless build of the same program: a console program started at
    logon opens a console window the employee could close (which stops the agent).
    """
    console = Executable(NAME, console=True)
    if platform == "win32":
        return (console, Executable(f"{NAME}-w", console=False))
    return (console,)


@dataclass(frozen=True)
class ColdStart:
    times: tuple[float, ...]  # seconds, one per run

    def summary(self) -> str:
        median = statistics.median(self.times)
        return (
            f"cold start (--version, {len(self.times)} runs): median {median:.2f} s, "
            f"min {min(self.times):.2f} s, max {max(self.times):.2f} s"
        )


def binary_paths(dist: Path, platform: str = sys.platform) -> list[Path]:
    """Where the build puts each of `executables(platform)`, in the same order."""
    return [dist / exe.file_name(platform) for exe in executables(platform)]


def build(
    dist: Path, work: Path, *, python: str = sys.executable, quiet: bool = False
) -> list[Path]:
    """Run PyInstaller on the spec; return the built binaries' paths, the console one first."""
    argv = [
        python, "-m", "PyInstaller", "--noconfirm", "--clean",
        "--distpath", str(dist), "--workpath", str(work),
        "--log-level", "WARN", str(SPEC),
    ]
    result = subprocess.run(
        argv, cwd=ROOT, capture_output=quiet, text=True, check=False, stdin=subprocess.DEVNULL
    )
    if result.returncode != 0:
        detail = f"\n{result.stdout}\n{result.stderr}" if quiet else ""
        raise BuildError(f"PyInstaller failed with exit code {result.returncode}{detail}")
    paths = binary_paths(dist)
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise BuildError(f"PyInstaller succeeded but {', '.join(missing)} is missing")
    return paths


def cold_start(binary: Path, runs: int) -> ColdStart:
    """Wall time of `binary --version`, `runs` times in a row."""
    times: list[float] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUCKETREEL_")}
    for _ in range(runs):
        started = time.perf_counter()
        result = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, check=False,
            stdin=subprocess.DEVNULL, env=env, timeout=120,
        )
        times.append(time.perf_counter() - started)
        if result.returncode != 0:
            raise BuildError(
                f"{binary} --version exited with {result.returncode}: {result.stderr.strip()}"
            )
    return ColdStart(tuple(times))


def human_size(size: int) -> str:
    return f"{size / 2**20:.1f} MiB ({size} bytes)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dist", type=Path, default=HERE / "dist", help="output directory")
    parser.add_argument("--work", type=Path, default=HERE / "work", help="PyInstaller work dir")
    parser.add_argument(
        "--cold-start", type=int, default=5, metavar="N",
        help="time `--version` N times after building (0: skip; default 5)",
    )
    args = parser.parse_args(argv)
    try:
        started = time.perf_counter()
        binaries = build(args.dist.resolve(), args.work.resolve())
        elapsed = time.perf_counter() - started
        print(f"PyInstaller took {elapsed:.0f} s")
        for binary in binaries:
            print(f"built: {binary}, {human_size(binary.stat().st_size)}")
        if args.cold_start > 0:
            print(cold_start(binaries[0], args.cold_start).summary())
    except BuildError as err:
        print(f"build_agent: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
