"""A scripted office desktop on an X display, the same every time it is played.

Run as a script (standard library only, libX11 and libXtst through ctypes):

    python workload.py --display :7 [--seed 1]

On the root window (Xvfb has no window manager) it draws a desktop with a taskbar and a
minute clock, and two application windows, an editor and a document viewer. It then plays a
120-second script, over and over, timed from its own start (so two plays of the same seed show
the same picture at the same offset):

     0- 35 s  typing in the editor (about 8 characters a second, a new line now and then)
    35- 50 s  idle (the caret blinks for 10 s after the last key, then stops, as GTK does)
    50 s      window switch: the document viewer comes to the front
    50- 75 s  reading with scroll bursts (a few wheel steps, then a pause)
    75- 95 s  idle, reading
    95 s      window switch: back to the editor
    95-115 s  typing
   115-120 s  idle

While "typing" or "scrolling" it also sends real input events with XTEST (a Shift tap per
key, a pointer nudge per wheel step), so an X idle timer sees a person at work; idle stretches
send none. It prints "workload ready" once the first picture is on screen and runs until it is
signalled.

`--scene motion` plays full-screen motion instead (`play_motion`).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import random
import sys
import time
from dataclasses import dataclass, field

c_dpy = ctypes.c_void_p
c_gc = ctypes.c_void_p
c_xid = ctypes.c_ulong

CYCLE = 120.0
TICK = 0.05  # the script is evaluated 20 times a second
CARET_BLINK = 0.5
CARET_BLINK_TIMEOUT = 10.0
TYPE_RATE = 8.0  # characters per second
EDITOR_COLUMNS = 100  # the editor wraps its lines here
SCROLL_BURST = (8, 0.1, 3.0)  # steps per burst, seconds per step, pause after the burst

# (start, end, activity, window in front)
SCRIPT: tuple[tuple[float, float, str, str], ...] = (
    (0.0, 35.0, "type", "editor"),
    (35.0, 50.0, "idle", "editor"),
    (50.0, 75.0, "scroll", "document"),
    (75.0, 95.0, "idle", "document"),
    (95.0, 115.0, "type", "editor"),
    (115.0, 120.0, "idle", "editor"),
)

_TEXT = (
    "the quarterly report shows revenue growth in every region while costs stayed flat "
    "please review the attached figures before the meeting on thursday and send comments "
    "customer feedback was positive overall although delivery times remain a concern "
    "we propose to hire two engineers and one designer for the next release cycle "
    "action items include updating the roadmap and confirming the budget with finance"
)
WORDS = tuple(_TEXT.split())


def load_libs() -> tuple[ctypes.CDLL, ctypes.CDLL | None]:
    xlib = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
    signatures: dict[str, tuple[list[type], type | None]] = {
        "XOpenDisplay": ([ctypes.c_char_p], c_dpy),
        "XDefaultScreen": ([c_dpy], ctypes.c_int),
        "XRootWindow": ([c_dpy, ctypes.c_int], c_xid),
        "XDisplayWidth": ([c_dpy, ctypes.c_int], ctypes.c_int),
        "XDisplayHeight": ([c_dpy, ctypes.c_int], ctypes.c_int),
        "XDefaultGC": ([c_dpy, ctypes.c_int], c_gc),
        "XSetForeground": ([c_dpy, c_gc, ctypes.c_ulong], ctypes.c_int),
        "XFillRectangle": (
            [c_dpy, c_xid, c_gc, ctypes.c_int, ctypes.c_int, ctypes.c_uint, ctypes.c_uint],
            ctypes.c_int,
        ),
        "XDrawString": (
            [c_dpy, c_xid, c_gc, ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int],
            ctypes.c_int,
        ),
        "XCopyArea": (
            [c_dpy, c_xid, c_xid, c_gc, ctypes.c_int, ctypes.c_int, ctypes.c_uint,
             ctypes.c_uint, ctypes.c_int, ctypes.c_int],
            ctypes.c_int,
        ),
        "XKeysymToKeycode": ([c_dpy, ctypes.c_ulong], ctypes.c_ubyte),
        "XDefaultDepth": ([c_dpy, ctypes.c_int], ctypes.c_int),
        "XCreatePixmap": ([c_dpy, c_xid, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint], c_xid),
        "XFlush": ([c_dpy], ctypes.c_int),
        "XSync": ([c_dpy, ctypes.c_int], ctypes.c_int),
    }
    for name, (argtypes, restype) in signatures.items():
        function = getattr(xlib, name)
        function.argtypes = argtypes
        function.restype = restype
    xtst_name = ctypes.util.find_library("Xtst")
    xtst = ctypes.CDLL(xtst_name) if xtst_name else None
    if xtst is not None:
        xtst.XTestFakeKeyEvent.argtypes = [c_dpy, ctypes.c_uint, ctypes.c_int, ctypes.c_ulong]
        xtst.XTestFakeRelativeMotionEvent.argtypes = [
            c_dpy, ctypes.c_int, ctypes.c_int, ctypes.c_ulong
        ]
    return xlib, xtst


@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    w: int
    h: int


LINE = 15  # pixels per text line (the server's built-in "fixed" font is 6x13)
CHAR = 6
TITLE = 28
MARGIN = 12


@dataclass
class TextPane:
    """A window's text area: lines of text that scroll up when full."""

    area: Rect
    lines: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return (self.area.h - 2 * MARGIN) // LINE

    @property
    def columns(self) -> int:
        return (self.area.w - 2 * MARGIN) // CHAR


class Desktop:
    """Draws on the root window; holds what each window shows."""

    def __init__(self, xlib: ctypes.CDLL, xtst: ctypes.CDLL | None, display: str,
                 seed: int) -> None:
        self.x, self.xtst = xlib, xtst
        self.dpy = xlib.XOpenDisplay(display.encode())
        if not self.dpy:
            raise SystemExit(f"cannot open X display {display}")
        screen = xlib.XDefaultScreen(self.dpy)
        self.root = xlib.XRootWindow(self.dpy, screen)
        self.gc = xlib.XDefaultGC(self.dpy, screen)
        self.width = xlib.XDisplayWidth(self.dpy, screen)
        self.height = xlib.XDisplayHeight(self.dpy, screen)
        self.shift = xlib.XKeysymToKeycode(self.dpy, 0xFFE1)  # XK_Shift_L
        self.rng = random.Random(seed)
        w, h = self.width * 3 // 4, (self.height - 40) * 5 // 6
        self.windows = {
            "editor": Rect(self.width // 16, self.height // 20, w, h),
            "document": Rect(self.width // 6, self.height // 9, w, h),
        }
        self.panes = {
            name: TextPane(Rect(r.x + 1, r.y + TITLE, r.w - 2, r.h - TITLE - 1))
            for name, r in self.windows.items()
        }
        self.front = ""
        self.clock = ""
        self.typed = ""  # the editor's current line
        self.pending: list[str] = []  # characters of the sentence being typed
        self.document_source = self._document_lines(2000)
        self.document_top = 0

    # -- drawing primitives -------------------------------------------------------------

    def fill(self, colour: int, r: Rect) -> None:
        self.x.XSetForeground(self.dpy, self.gc, colour)
        self.x.XFillRectangle(self.dpy, self.root, self.gc, r.x, r.y, max(r.w, 0), max(r.h, 0))

    def text(self, colour: int, x: int, y: int, value: str) -> None:
        data = value.encode("latin-1", "replace")
        self.x.XSetForeground(self.dpy, self.gc, colour)
        self.x.XDrawString(self.dpy, self.root, self.gc, x, y, data, len(data))

    # -- content ---------------------------------------------------------------------------

    def _sentence(self) -> str:
        words = [self.rng.choice(WORDS) for _ in range(self.rng.randint(6, 18))]
        return " ".join(words).capitalize() + "."

    def _document_lines(self, count: int) -> list[str]:
        columns = self.panes["document"].columns - 4
        lines: list[str] = []
        while len(lines) < count:
            paragraph = " ".join(self._sentence() for _ in range(self.rng.randint(2, 6)))
            while paragraph:
                cut = paragraph.rfind(" ", 0, columns) if len(paragraph) > columns else -1
                cut = len(paragraph) if cut <= 0 else cut
                lines.append(paragraph[:cut])
                paragraph = paragraph[cut:].lstrip()
            lines.append("")
            if self.rng.random() < 0.25:
                lines.extend(["\x00figure"] + [""] * 8)
        return lines

    # -- windows ---------------------------------------------------------------------------

    def draw_desktop(self) -> None:
        self.fill(0x2E5C8A, Rect(0, 0, self.width, self.height))
        self.fill(0x1E1E1E, Rect(0, self.height - 36, self.width, 36))
        for i, label in enumerate(("Files", "Editor", "Documents", "Mail", "Browser")):
            self.fill(0x3A3A3A, Rect(8 + i * 130, self.height - 30, 120, 24))
            self.text(0xDDDDDD, 20 + i * 130, self.height - 13, label)

    def draw_clock(self, now: float) -> None:
        """A taskbar clock that changes once a minute, as desktop clocks do."""
        label = time.strftime("%H:%M", time.localtime(now))
        if label == self.clock:
            return
        self.clock = label
        box = Rect(self.width - 90, self.height - 30, 80, 24)
        self.fill(0x1E1E1E, box)
        self.text(0xFFFFFF, box.x + 25, box.y + 17, label)

    def raise_window(self, name: str) -> None:
        """Bring a window to the front: frame, title bar and its whole content."""
        self.front = name
        frame = self.windows[name]
        self.fill(0x888888, frame)
        self.fill(0x4A6FA5, Rect(frame.x + 1, frame.y + 1, frame.w - 2, TITLE - 2))
        title = "report.txt - Editor" if name == "editor" else "handbook.pdf - Documents"
        self.text(0xFFFFFF, frame.x + 12, frame.y + 18, title)
        pane = self.panes[name]
        self.fill(0xFFFFFF, pane.area)
        if name == "editor":
            for row, line in enumerate(pane.lines[-(pane.rows - 1):]):
                self._draw_line(pane, row, line)
            self._draw_line(pane, min(len(pane.lines), pane.rows - 1), self.typed)
        else:
            self._draw_document()

    def _draw_line(self, pane: TextPane, row: int, line: str, colour: int = 0x202020) -> None:
        self.text(colour, pane.area.x + MARGIN, pane.area.y + MARGIN + row * LINE + 11, line)

    def _draw_document_row(self, row: int, line: str) -> None:
        pane = self.panes["document"]
        if line == "\x00figure":
            hue = (self.document_top + row) * 2654435761 % 0xFFFFFF
            top = pane.area.y + MARGIN + row * LINE
            height = min(LINE * 8, pane.area.y + pane.area.h - MARGIN - top)
            self.fill(hue | 0x404040, Rect(pane.area.x + 60, top, pane.area.w // 2, height))
        elif line:
            self._draw_line(pane, row, line)

    def _draw_document(self) -> None:
        pane = self.panes["document"]
        self.fill(0xFFFFFF, pane.area)
        for row in range(pane.rows):
            self._draw_document_row(row, self.document_source[self.document_top + row])

    # -- activities -------------------------------------------------------------------------

    def editor_row(self) -> int:
        return min(len(self.panes["editor"].lines), self.panes["editor"].rows - 1)

    def type_char(self) -> None:
        pane = self.panes["editor"]
        if len(self.typed) >= min(pane.columns - 2, EDITOR_COLUMNS) or (
            self.typed.endswith(". ") and self.rng.random() < 0.3
        ):
            self.newline()
            return
        if not self.pending:
            self.pending = list(self._sentence() + " ")
        self.typed += self.pending.pop(0)
        if self.front == "editor":
            row = self.editor_row()
            self._clear_row(pane, row)
            self._draw_line(pane, row, self.typed)
        self.tap()

    def _clear_row(self, pane: TextPane, row: int) -> None:
        self.fill(0xFFFFFF, Rect(pane.area.x, pane.area.y + MARGIN + row * LINE,
                                 pane.area.w, LINE))

    def newline(self) -> None:
        pane = self.panes["editor"]
        pane.lines.append(self.typed)
        self.typed = ""
        if len(pane.lines) >= pane.rows and self.front == "editor":
            a = pane.area
            top = a.y + MARGIN
            self.x.XCopyArea(self.dpy, self.root, self.root, self.gc, a.x, top + LINE,
                             a.w, (pane.rows - 1) * LINE, a.x, top)
            self._clear_row(pane, pane.rows - 1)
        self.tap()

    def draw_caret(self, visible: bool) -> None:
        if self.front != "editor":
            return
        pane = self.panes["editor"]
        x = pane.area.x + MARGIN + len(self.typed) * CHAR
        y = pane.area.y + MARGIN + self.editor_row() * LINE
        self.fill(0x202020 if visible else 0xFFFFFF, Rect(x, y, 2, LINE - 2))

    def scroll_step(self) -> None:
        pane = self.panes["document"]
        step = 3
        if self.document_top + step + pane.rows >= len(self.document_source):
            self.document_top = 0
            self._draw_document()
        else:
            self.document_top += step
            a = pane.area
            top = a.y + MARGIN
            self.x.XCopyArea(self.dpy, self.root, self.root, self.gc, a.x, top + step * LINE,
                             a.w, (pane.rows - step) * LINE, a.x, top)
            self.fill(0xFFFFFF, Rect(a.x, top + (pane.rows - step) * LINE, a.w,
                                     a.h - MARGIN - (pane.rows - step) * LINE))
            for row in range(pane.rows - step - 8, pane.rows):
                if row >= 0:
                    self._draw_document_row(row, self.document_source[self.document_top + row])
        if self.xtst is not None:
            self.xtst.XTestFakeRelativeMotionEvent(self.dpy, 1, 0, 0)

    def tap(self) -> None:
        if self.xtst is not None and self.shift:
            self.xtst.XTestFakeKeyEvent(self.dpy, self.shift, 1, 0)
            self.xtst.XTestFakeKeyEvent(self.dpy, self.shift, 0, 0)

    def flush(self) -> None:
        self.x.XFlush(self.dpy)


def activity_at(offset: float) -> tuple[str, str, float]:
    """(activity, window in front, seconds since the activity started) at `offset`."""
    t = offset % CYCLE
    for start, end, activity, window in SCRIPT:
        if start <= t < end:
            return activity, window, t - start
    return SCRIPT[-1][2], SCRIPT[-1][3], t - SCRIPT[-1][0]


def play(desktop: Desktop, start: float) -> None:
    typed_chars = 0
    scroll_steps = 0
    last_input = start
    caret_on = False
    segment_key: tuple[int, str] = (-1, "")
    next_tick = time.monotonic()
    while True:
        now = time.monotonic()
        offset = now - start
        activity, window, since = activity_at(offset)
        key = (int(offset // CYCLE), activity + window)
        if key != segment_key:
            segment_key = key
            typed_chars = scroll_steps = 0
        if window != desktop.front:
            desktop.raise_window(window)
            caret_on = False
        if activity == "type":
            due = int(since * TYPE_RATE)
            if typed_chars < due and caret_on:
                desktop.draw_caret(False)
            while typed_chars < due:
                desktop.type_char()
                typed_chars += 1
                last_input = now
                caret_on = False  # the typed row was redrawn without it
        elif activity == "scroll":
            steps, per_step, pause = SCROLL_BURST
            burst = steps * per_step + pause
            done_bursts, within = divmod(since, burst)
            due = int(done_bursts) * steps + min(steps, int(within / per_step))
            while scroll_steps < due:
                desktop.scroll_step()
                scroll_steps += 1
                last_input = now
        blinking = now - last_input < CARET_BLINK_TIMEOUT
        want_caret = (not blinking) or int((now - last_input) / CARET_BLINK) % 2 == 0
        if want_caret != caret_on:
            desktop.draw_caret(want_caret)
            caret_on = want_caret
        desktop.draw_clock(time.time())
        desktop.flush()
        next_tick += TICK
        time.sleep(max(0.0, next_tick - time.monotonic()))


MOTION_SPEED = (53.0, 31.0)  # pixels per second the picture pans, right and down
MOTION_TICK = 0.1


def play_motion(desktop: Desktop) -> None:
    """Full-screen motion: a picture twice the screen's size (a document's text, figures,
    colour bands) pans diagonally across the whole screen, bouncing at its edges; every frame
    differs everywhere, as a video or a fast scroll does."""
    x, dpy, w, h = desktop.x, desktop.dpy, desktop.width, desktop.height
    depth = x.XDefaultDepth(dpy, x.XDefaultScreen(dpy))
    picture = x.XCreatePixmap(dpy, desktop.root, 2 * w, 2 * h, depth)
    rng = random.Random(7)
    target = desktop.root
    desktop.root = picture  # draw the picture with the desktop's own primitives
    desktop.fill(0xFFFFFF, Rect(0, 0, 2 * w, 2 * h))
    for band in range(0, 2 * h, 8):  # slow colour bands, like a photograph's sky
        shade = 0x60 + (band * 3 // 8) % 0x90
        desktop.fill((shade << 16) | (0xA0 << 8) | (0xFF - shade // 2), Rect(0, band, w // 2, 8))
    for row in range(0, 2 * h, LINE):
        desktop.text(0x202020, w // 2 + 20, row + 12, desktop._sentence()[: 2 * w // CHAR // 2])
    for _ in range(60):
        fw, fh = rng.randint(80, 400), rng.randint(60, 300)
        desktop.fill(rng.randint(0, 0xFFFFFF), Rect(rng.randint(0, 2 * w - fw),
                                                    rng.randint(0, 2 * h - fh), fw, fh))
    desktop.root = target
    x.XCopyArea(dpy, picture, desktop.root, desktop.gc, 0, 0, w, h, 0, 0)
    x.XSync(dpy, 0)
    print(f"workload ready {desktop.width}x{desktop.height} (motion)", flush=True)
    start = next_tick = time.monotonic()
    while True:
        t = time.monotonic() - start
        sx = int(t * MOTION_SPEED[0]) % (2 * w)
        sy = int(t * MOTION_SPEED[1]) % (2 * h)
        sx = sx if sx <= w else 2 * w - sx  # bounce between 0 and w
        sy = sy if sy <= h else 2 * h - sy
        x.XCopyArea(dpy, picture, desktop.root, desktop.gc, sx, sy, w, h, 0, 0)
        desktop.flush()
        next_tick += MOTION_TICK
        time.sleep(max(0.0, next_tick - time.monotonic()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--display", required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scene", choices=("desktop", "motion"), default="desktop",
                        help="the scripted desktop (default) or full-screen motion")
    args = parser.parse_args(argv)
    try:
        xlib, xtst = load_libs()
    except OSError as err:
        print(f"libX11 not found ({err}): run scripts/install.sh", file=sys.stderr)
        return 2
    desktop = Desktop(xlib, xtst, args.display, args.seed)
    if args.scene == "motion":
        play_motion(desktop)
        return 0
    desktop.draw_desktop()
    desktop.draw_clock(time.time())
    start = time.monotonic()
    desktop.raise_window(activity_at(0.0)[1])
    desktop.x.XSync(desktop.dpy, 0)
    inputs = "with XTEST input" if xtst is not None else "without input events (no libXtst)"
    print(f"workload ready on {args.display} {desktop.width}x{desktop.height} {inputs}",
          flush=True)
    play(desktop, start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
