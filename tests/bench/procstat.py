"""CPU time and resident memory of a process tree, read from /proc (Linux only).

CPU is utime + stime of every live process in the tree (threads included); the final total
comes from `os.wait4`'s rusage when the root is reaped, which also counts descendants it
waited for. RSS is the sum of VmRSS over the tree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the process started (monotonic)
    cpu: float  # CPU seconds used so far by the tree
    rss: int  # bytes resident, summed over the tree


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # the command name (field 2) is in parentheses and may hold spaces: split after it
    return text[text.rindex(")") + 2 :].split()


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in (PROC / str(pid) / "task").glob("*/children"):
        try:
            found.extend(int(p) for p in task.read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def tree(pid: int) -> list[int]:
    """`pid` and every live descendant."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        todo.extend(_children(current))
    return pids


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads), in seconds; 0 if it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # after the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """VmRSS of one process in bytes; 0 if it is gone (or a zombie)."""
    try:
        text = (PROC / str(pid) / "status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def sample(pid: int, at: float) -> Sample:
    pids = tree(pid)
    return Sample(at, sum(cpu_seconds(p) for p in pids), sum(rss_bytes(p) for p in pids))
