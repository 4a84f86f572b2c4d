"""A Chromium-rendered office workload on an X display, the same every time it is played.

Run as a script (standard library only; Debian's `chromium` and `xdotool`):

    python office.py --display :7 --profile DIR

It opens office.html full screen in Debian's Chromium (a real, headed browser on the
display: antialiased text, a table, a form) and plays a 120-second script with xdotool, over
and over, timed from its own start (two plays show the same picture at the same offset, give
or take the browser's own timing):

     0- 12 s  types an expense claim's title and amount (about 8 characters a second)
    12- 40 s  types notes into the form's text area
    40- 55 s  idle (the caret blinks)
    55- 80 s  reads the report: scroll bursts (4 wheel steps, then a pause)
    80- 95 s  idle, reading
    95-110 s  scrolls back up in bursts
   110-120 s  types more notes

It prints "workload ready" once the page is on screen and runs until it is signalled; the
browser is ended with it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

PAGE = Path(__file__).with_name("office.html")
CHROMIUM = "/usr/bin/chromium"
CYCLE = 120.0
TYPE_DELAY_MS = 125  # 8 characters a second
SCROLL_BURST = (4, 3.0)  # wheel steps per burst, seconds from one burst to the next

# window-relative positions of what is clicked on, for 1920x1080 (office.html's grid)
TITLE_FIELD = (1700, 140)
AMOUNT_FIELD = (1700, 202)
NOTES_FIELD = (1700, 420)
REPORT = (900, 600)

TITLE = "Client visit Hamburg, train and hotel"
AMOUNT = "412.80"
NOTES = (
    "Visited the customer to review the rollout plan for the second quarter. Travel by "
    "train both ways, one night at the hotel near the station. Receipts are attached. "
    "The customer asked for a follow-up call next week about the support contract and "
    "the training sessions for their new staff. "
)

# (start, end, what, argument)
SCRIPT: tuple[tuple[float, float, str, str], ...] = (
    (0.0, 6.0, "type", "title"),
    (6.0, 12.0, "type", "amount"),
    (12.0, 40.0, "type", "notes"),
    (40.0, 55.0, "idle", ""),
    (55.0, 80.0, "scroll", "5"),  # wheel down
    (80.0, 95.0, "idle", ""),
    (95.0, 110.0, "scroll", "4"),  # wheel up
    (110.0, 120.0, "type", "notes"),
)


class Xdotool:
    def __init__(self, display: str) -> None:
        found = shutil.which("xdotool")
        if found is None:
            raise SystemExit("xdotool not found: run scripts/install.sh")
        self.exe = found
        self.env = {**os.environ, "DISPLAY": display}

    def __call__(self, *args: str) -> str:
        done = subprocess.run(
            [self.exe, *args], env=self.env, capture_output=True, text=True, check=False,
            timeout=30,
        )
        return done.stdout.strip()


def start_browser(display: str, profile: Path, width: int, height: int) -> subprocess.Popen[bytes]:
    if not os.access(CHROMIUM, os.X_OK):
        raise SystemExit(f"{CHROMIUM} not found: run scripts/install.sh")
    argv = [
        CHROMIUM, "--no-sandbox", "--test-type", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-features=Translate,MediaRouter,OptimizationHints", "--password-store=basic",
        "--force-device-scale-factor=1", f"--user-data-dir={profile}", "--kiosk",
        "--window-position=0,0", f"--window-size={width},{height}", PAGE.as_uri(),
    ]
    return subprocess.Popen(
        argv, env={**os.environ, "DISPLAY": display}, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )


def activity_at(offset: float) -> tuple[int, str, str, float]:
    """(index in SCRIPT, what, argument, seconds since it started) at `offset`."""
    t = offset % CYCLE
    for i, (start, end, what, arg) in enumerate(SCRIPT):
        if start <= t < end:
            return i, what, arg, t - start
    last = SCRIPT[-1]
    return len(SCRIPT) - 1, last[2], last[3], t - last[0]


class Player:
    """Plays the script; keeps what was typed where, so each play types the same."""

    def __init__(self, xdo: Xdotool) -> None:
        self.xdo = xdo
        self.texts = {"title": TITLE, "amount": AMOUNT, "notes": NOTES * 20}
        self.typed = {"title": 0, "amount": 0, "notes": 0}
        self.fields = {"title": TITLE_FIELD, "amount": AMOUNT_FIELD, "notes": NOTES_FIELD}
        self.focused = ""

    def focus(self, name: str) -> None:
        if self.focused != name:
            x, y = self.fields[name]
            self.xdo("mousemove", str(x), str(y), "click", "1")
            self.xdo("key", "End")
            self.focused = name

    def type_due(self, name: str, since: float, start_index: int) -> None:
        """Type the field's characters due `since` seconds into this stretch."""
        due = start_index + int(since * 1000 / TYPE_DELAY_MS)
        text = self.texts[name]
        due = min(due, len(text))
        if due <= self.typed[name]:
            return
        self.focus(name)
        chunk = text[self.typed[name] : due]
        self.xdo("type", "--delay", str(TYPE_DELAY_MS // 2), chunk)
        self.typed[name] = due

    def scroll(self, button: str) -> None:
        if self.focused != "report":
            self.xdo("mousemove", str(REPORT[0]), str(REPORT[1]))
            self.focused = "report"
        steps, _ = SCROLL_BURST
        self.xdo("click", "--repeat", str(steps), "--delay", "60", button)


def play(player: Player, start: float) -> None:
    current: tuple[int, int] = (-1, -1)
    stretch_base = 0
    bursts = 0
    while True:
        offset = time.monotonic() - start
        index, what, arg, since = activity_at(offset)
        key = (int(offset // CYCLE), index)
        if key != current:
            current = key
            bursts = 0
            if what == "type":
                stretch_base = player.typed[arg]
        if what == "type":
            player.type_due(arg, since, stretch_base)
        elif what == "scroll":
            _, every = SCROLL_BURST
            while bursts <= since // every:
                player.scroll(arg)
                bursts += 1
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--display", required=True)
    parser.add_argument("--profile", type=Path, required=True, help="browser profile dir")
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    args = parser.parse_args(argv)
    xdo = Xdotool(args.display)
    browser = start_browser(args.display, args.profile, args.width, args.height)

    def end(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, end)
    try:
        deadline = time.monotonic() + 60
        while "Intranet" not in xdo("search", "--onlyvisible", "--name", "Intranet",
                                    "getwindowname"):
            if browser.poll() is not None or time.monotonic() > deadline:
                print("chromium did not show the page", file=sys.stderr)
                return 1
            time.sleep(0.5)
        time.sleep(3.0)  # the first paint and the fonts settle
        print(f"workload ready on {args.display} {args.width}x{args.height} (chromium)",
              flush=True)
        play(Player(xdo), time.monotonic())
    finally:
        if browser.poll() is None:
            os.killpg(browser.pid, signal.SIGTERM)
            try:
                browser.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(browser.pid, signal.SIGKILL)
                browser.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
