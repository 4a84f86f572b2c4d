"""Build the one-file `bucketreel-agent` binary with PyInstaller, then report its size.

    .venv/bin/python build/build_agent.py [--dist DIR] [--work DIR] [--cold-start N]

Builds `build/bucketreel-agent.spec` into `build/dist/bucketreel-agent` (work files in
`build/work/`, both gitignored). Prints the binary's path and size; with `--cold-start N`
(default 5) it also runs `bucketreel-agent --version` N times and prints the wall times: a
one-file binary unpacks itself into a temp dir on every start, so that is its cold start.
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
class ColdStart:
    times: tuple[float, ...]  # seconds, one per run

    def summary(self) -> str:
        median = statistics.median(self.times)
        return (
            f"cold start (--version, {len(self.times)} runs): median {median:.2f} s, "
            f"min {min(self.times):.2f} s, max {max(self.times):.2f} s"
        )


def binary_path(dist: Path) -> Path:
    suffix = ".exe" if sys.platform == "win32" else ""
    return dist / f"{NAME}{suffix}"


def build(dist: Path, work: Path, *, python: str = sys.executable, quiet: bool = False) -> Path:
    """Run PyInstaller on the spec; return the binary's path."""
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
    path = binary_path(dist)
    if not path.is_file():
        raise BuildError(f"PyInstaller succeeded but {path} is missing")
    return path


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
    return f"{size / 1_000_000:.1f} MB ({size} bytes)"


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
        binary = build(args.dist.resolve(), args.work.resolve())
        elapsed = time.perf_counter() - started
        print(f"built {binary} in {elapsed:.0f} s")
        print(f"size: {human_size(binary.stat().st_size)}")
        if args.cold_start > 0:
            print(cold_start(binary, args.cold_start).summary())
    except BuildError as err:
        print(f"build_agent: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
