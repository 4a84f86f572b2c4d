"""Sampling the broker during a step with py-spy (`--profile`), summed per function.

py-spy is a profiler run by hand, not a dependency of the project or its tests: install it
into the venv for a profiled run (`.venv/bin/pip install py-spy`). It samples every thread
(`--nonblocking`: the broker is never paused) and writes collapsed stacks; the summary gives
each function's share of the samples in which the broker was busy (not idle in its
selector), inclusive of what it calls.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tests.support.procs import MissingDependencyError

_FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>.*?)(?::\d+)?\)$")
IDLE = ("EpollSelector.select", "Condition.wait", "_worker (concurrent", "Queue.get")


def py_spy() -> str:
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which(
        "py-spy")
    if found is None:
        raise MissingDependencyError(
            "--profile needs py-spy: .venv/bin/pip install py-spy (a profiler, not a dependency)"
        )
    return found


def record(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """Start sampling `pid` for `seconds` into `out` (collapsed stacks)."""
    return subprocess.Popen(
        [py_spy(), "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))),
         "--rate", "250", "--format", "raw", "--nonblocking", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def _name(frame: str) -> str:
    match = _FRAME.match(frame)
    if match is None:
        return frame
    where = match["file"].split("site-packages/")[-1]
    for marker in ("/broker/", "/shared/"):
        if marker in where:
            where = marker.strip("/") + "/" + where.split(marker, 1)[1]
    return f"{match['name']} ({where})"


def summarize(path: Path, top: int = 25) -> list[str]:
    """The functions that took the largest share of the busy samples."""
    inclusive: Counter[str] = Counter()
    busy = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = [_name(f) for f in stack.split(";") if f]
        if not frames or any(frames[-1].startswith(idle) for idle in IDLE):
            continue
        busy += int(count)
        for name in set(frames):
            inclusive[name] += int(count)
    if not busy:
        return ["  (no busy samples)"]
    lines = [f"  {busy} busy samples; share of them, inclusive:"]
    interesting = [
        (name, n) for name, n in inclusive.most_common()
        if name.split(" (")[-1].startswith(("broker/", "shared/", "sqlalchemy/", "botocore/",
                                            "aiosqlite/", "asyncpg/", "jwt/", "cryptography/"))
    ]
    lines += [f"  {100 * n / busy:5.1f}%  {name}" for name, n in interesting[:top]]
    return lines
