"""Keep an X display's content changing: a colour-cycling background and a bouncing box.

Run as a script (no imports beyond the standard library, libX11 through ctypes):

    python animate.py --display :7 [--fps 20]

It draws straight onto the root window (Xvfb has no window manager), prints "animating" once
the first frame is on screen, and runs until it is signalled.
"""

from __future__ import annotations

import argparse
import colorsys
import ctypes
import ctypes.util
import sys
import time

c_dpy = ctypes.c_void_p
c_gc = ctypes.c_void_p
c_xid = ctypes.c_ulong


def load_xlib() -> ctypes.CDLL:
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
        "XSync": ([c_dpy, ctypes.c_int], ctypes.c_int),
    }
    for name, (argtypes, restype) in signatures.items():
        function = getattr(xlib, name)
        function.argtypes = argtypes
        function.restype = restype
    return xlib


def rgb(hue: float, saturation: float, value: float) -> int:
    """A TrueColor pixel value (0xRRGGBB) for an HSV colour."""
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, saturation, value)
    return (int(r * 255) << 16) | (int(g * 255) << 8) | int(b * 255)


def bounce(position: int, span: int) -> int:
    """Fold an ever-growing position into 0..span and back."""
    if span <= 0:
        return 0
    cycle = position % (2 * span)
    return cycle if cycle <= span else 2 * span - cycle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--display", required=True)
    parser.add_argument("--fps", type=float, default=20.0)
    args = parser.parse_args(argv)
    try:
        xlib = load_xlib()
    except OSError as err:
        print(f"libX11 not found ({err}): run scripts/install.sh", file=sys.stderr)
        return 2
    dpy = xlib.XOpenDisplay(args.display.encode())
    if not dpy:
        print(f"cannot open X display {args.display}", file=sys.stderr)
        return 2
    screen = xlib.XDefaultScreen(dpy)
    root = xlib.XRootWindow(dpy, screen)
    width, height = xlib.XDisplayWidth(dpy, screen), xlib.XDisplayHeight(dpy, screen)
    gc = xlib.XDefaultGC(dpy, screen)
    box = max(8, min(width, height) // 5)
    period = 1.0 / args.fps
    frame = 0
    next_tick = time.monotonic()
    while True:
        xlib.XSetForeground(dpy, gc, rgb(frame / 200.0, 0.5, 0.6))
        xlib.XFillRectangle(dpy, root, gc, 0, 0, width, height)
        xlib.XSetForeground(dpy, gc, rgb(frame / 200.0 + 0.5, 0.9, 1.0))
        x = bounce(frame * 13, width - box)
        y = bounce(frame * 7, height - box)
        xlib.XFillRectangle(dpy, root, gc, x, y, box, box)
        # A frame counter bar along the bottom edge: no two consecutive frames look alike.
        xlib.XSetForeground(dpy, gc, 0xFFFFFF)
        xlib.XFillRectangle(dpy, root, gc, 0, height - 6, 1 + frame % width, 6)
        xlib.XSync(dpy, 0)
        if frame == 0:
            print(f"animating {args.display} {width}x{height}", flush=True)
        frame += 1
        next_tick += period
        time.sleep(max(0.0, next_tick - time.monotonic()))


if __name__ == "__main__":
    sys.exit(main())
