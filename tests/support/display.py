"""A real X display for mss: Xvfb on a display number it picks itself, plus an animator.

Xvfb is started with `-displayfd`, so it chooses a free display number and writes it to a pipe
once it accepts connections: no race on display numbers, and reading the number is the
readiness signal. The animator (animate.py) keeps the screen content changing.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from .procs import INSTALL_HINT, ManagedProcess, Probe, require_executable

ANIMATOR = Path(__file__).with_name("animate.py")


@dataclass(frozen=True)
class XDisplay:
    display: str  # the DISPLAY string, ":N"
    width: int
    height: int
    depth: int
    pid: int  # Xvfb's
    animator_pid: int | None  # None for a still screen

    @property
    def number(self) -> int:
        return int(self.display.lstrip(":"))


def _displayfd_probe(fd: int, received: bytearray) -> Probe:
    def probe() -> bool:
        with contextlib.suppress(BlockingIOError):
            chunk = os.read(fd, 64)
            received.extend(chunk)
        return b"\n" in received

    return probe


def _start_xvfb(
    stack: ExitStack, width: int, height: int, depth: int,
    log_dir: str | os.PathLike[str] | None, timeout: float,
) -> tuple[ManagedProcess, str]:
    xvfb = require_executable("Xvfb", INSTALL_HINT)
    read_fd, write_fd = os.pipe()
    stack.callback(os.close, read_fd)
    os.set_blocking(read_fd, False)
    try:
        proc = ManagedProcess(
            "xvfb",
            [xvfb, "-displayfd", str(write_fd), "-screen", "0", f"{width}x{height}x{depth}",
             "-nolisten", "tcp", "-noreset"],
            pass_fds=(write_fd,), log_dir=log_dir,
        )
        stack.enter_context(proc)
    finally:
        os.close(write_fd)  # only Xvfb holds the write end now
    received = bytearray()
    proc.wait_ready(_displayfd_probe(read_fd, received), timeout=timeout)
    return proc, ":" + received.split(b"\n", 1)[0].decode().strip()


@contextmanager
def run_xvfb(
    width: int = 1280,
    height: int = 720,
    depth: int = 24,
    *,
    animate: bool = True,
    fps: float = 20.0,
    log_dir: str | os.PathLike[str] | None = None,
    timeout: float = 30.0,
) -> Iterator[XDisplay]:
    """Run Xvfb (and, if `animate`, the animator) until the block ends; stop both by PID."""
    with ExitStack() as stack:
        xvfb, display = _start_xvfb(stack, width, height, depth, log_dir, timeout)
        animator_pid: int | None = None
        if animate:
            animator = ManagedProcess(
                "animator",
                [sys.executable, str(ANIMATOR), "--display", display, "--fps", str(fps)],
                env={**os.environ, "DISPLAY": display},
                log_dir=log_dir,
                stop_timeout=5.0,
            )
            stack.enter_context(animator)  # stopped before Xvfb (LIFO)
            animator.wait_ready(lambda: "animating" in animator.log_text(), timeout=timeout)
            animator_pid = animator.pid
        yield XDisplay(display, width, height, depth, xvfb.pid, animator_pid)
