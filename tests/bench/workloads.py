"""The benchmark's three screens, each on a fresh 1920x1080 Xvfb, the same on every play.

- `desktop`: the scripted X11 desktop (workload.py: typing, scrolling, window switches, idle);
- `office`: Debian's Chromium, headed on the display, showing office.html (antialiased
  text, a table, a form typed into with xdotool, scroll bursts; office.py);
- `motion`: a picture panning across the whole screen (workload.py --scene motion).

Each is timed from its own start, so two plays show the same picture at the same offset.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from tests.support.display import XDisplay, run_xvfb
from tests.support.procs import ManagedProcess

HERE = Path(__file__).parent
WIDTH, HEIGHT = 1920, 1080
WORKLOADS = ("desktop", "office", "motion")
DESCRIPTIONS = {
    "desktop": "scripted X11 desktop (bitmap text, typing, scrolling, window switches, idle)",
    "office": "Chromium office page (antialiased text, a table, a form typed into, scrolling)",
    "motion": "full-screen motion (a picture panning across the whole screen)",
}


def clean_env() -> dict[str, str]:
    """This environment without display, AWS or bucketreel settings from outside."""
    return {
        k: v for k, v in os.environ.items()
        if k not in {"DISPLAY", "WAYLAND_DISPLAY", "XAUTHORITY"}
        and not k.startswith(("BUCKETREEL_", "AWS_"))
    } | {"AWS_EC2_METADATA_DISABLED": "true"}


def _argv(name: str, display: str, workdir: Path, seed: int) -> list[str]:
    if name == "office":
        profile = workdir / "chromium-profile"
        profile.mkdir(parents=True, exist_ok=True)
        return [sys.executable, str(HERE / "office.py"), "--display", display,
                "--profile", str(profile)]
    scene = ["--scene", "motion"] if name == "motion" else []
    return [sys.executable, str(HERE / "workload.py"), "--display", display,
            "--seed", str(seed), *scene]


@contextmanager
def screen(name: str, workdir: Path, seed: int = 1) -> Iterator[XDisplay]:
    """A fresh 1920x1080 Xvfb with workload `name` playing on it (from its first picture)."""
    if name not in WORKLOADS:
        raise ValueError(f"unknown workload {name!r} (known: {', '.join(WORKLOADS)})")
    logs = workdir / "logs"
    with ExitStack() as stack:
        display = stack.enter_context(run_xvfb(WIDTH, HEIGHT, animate=False, log_dir=logs))
        workload = ManagedProcess(
            f"workload-{name}", _argv(name, display.display, workdir / name, seed),
            env={**clean_env(), "DISPLAY": display.display}, log_dir=logs, stop_timeout=15.0,
        )
        stack.enter_context(workload)
        workload.wait_ready(lambda: "workload ready" in workload.log_text(), timeout=120)
        yield display
