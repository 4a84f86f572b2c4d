"""Capture health (agent.health): frames without a picture, one colour or still while the user
works, for longer than the threshold make the capture `blocked` with a reason, and the first
changed picture makes it `ok` again. Frames and the clock are made up here; the real capture
on Xvfb is tests/idle/test_capture_blocked.py. The OS checks (agent.platform.screen) run with
a faked environment and, for macOS (which cannot run here), a stand-in CoreGraphics."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent import config
from agent.capture import Frame
from agent.health import CaptureHealth, sample, status_line
from agent.heartbeat import heartbeat_of
from agent.idle import IdleWatch
from agent.platform import IdleState, IdleUnavailable, screen
from shared.wire import CaptureState, GapReport, Heartbeat, WireError

W, H = 640, 480
T0 = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def solid(bgra: bytes, width: int = W, height: int = H) -> bytearray:
    return bytearray(bgra * (width * height))


def picture(seed: int = 0) -> bytearray:
    """Not one colour: a gradient over the rows, shifted by `seed`."""
    raw = bytearray(W * H * 4)
    for y in range(H):
        value = (y + seed) % 256
        raw[y * W * 4:(y + 1) * W * 4] = bytes((value, 255 - value, 7, 255)) * W
    return raw


class Feeder:
    """Frames one second apart into a CaptureHealth on a fake clock."""

    def __init__(self, health: CaptureHealth, clock: Clock) -> None:
        self.health, self.clock, self.tick = health, clock, 0

    def feed(self, raw: bytearray, width: int = W, height: int = H) -> bool:
        frame = Frame(raw=raw, width=width, height=height, tick=self.tick,
                      captured_at=T0 + timedelta(seconds=self.tick))
        changed = self.health.feed(frame)
        self.tick += 1
        self.clock.now += 1
        return changed


def feeder(seconds: float = 10, *, input_age: Any = lambda: None,
           cause: Any = lambda: None) -> Feeder:
    clock = Clock()
    return Feeder(CaptureHealth(seconds, input_age=input_age, cause=cause, clock=clock), clock)


def test_a_sample_is_a_sparse_grid_and_tells_one_colour() -> None:
    black = sample(solid(b"\0\0\0\xff"), W, H)
    assert black.one_colour
    assert len(black.pixels) == 32 * (W // 64) * 4  # 32 rows, every 64th pixel
    assert not sample(picture(), W, H).one_colour
    assert sample(picture(1), W, H) != sample(picture(2), W, H)
    tiny = sample(solid(b"\1\2\3\4", 3, 2), 3, 2)  # fewer rows and columns than the grid
    assert tiny.one_colour
    assert len(tiny.pixels) == 2 * 4
    # a grid of lines every 8 pixels (xsetroot -mod 8 8) is not one colour to it
    lines = bytearray(b"\x80\0\0\xff" * (W * H))
    for y in range(H):
        for x in range(0, W, 8):
            lines[(y * W + x) * 4:(y * W + x) * 4 + 4] = b"\xff\xff\xff\xff"
    assert not sample(lines, W, H).one_colour
    # a change between the grid's pixels goes unseen by the grid (which only pre-judges
    # "one colour"; whether the picture changed is decided byte for byte, below)
    raw = picture()
    raw[(1 * W + 1) * 4] ^= 0xFF
    assert sample(raw, W, H) == sample(picture(), W, H)


def test_typing_between_the_sampled_rows_is_a_changing_picture() -> None:
    """A person typing one short line for minutes changes few pixels, perhaps none on the
    sparse grid: the recording must go on (a grid-only compare declared it blocked)."""
    f = feeder(10, input_age=lambda: 0.2)  # input all the time
    raw = picture()
    for n in range(60):
        typed = bytearray(raw)
        x = 2 + n * 9  # one glyph-sized dot further along row 1 each second
        typed[(1 * W + x) * 4:(1 * W + x) * 4 + 4] = b"\xff\xff\xff\xff"
        raw = typed
        assert not f.feed(raw), f"blocked after {n} s of typing"
    assert f.health.blocked is None


def test_a_dark_screen_with_a_little_text_is_not_one_colour() -> None:
    """Small white text on black between the grid's pixels: the grid says one colour, the
    whole-frame check does not, so a still dark page without input is not display_blank."""
    f = feeder(10)
    raw = solid(b"\0\0\0\xff")
    raw[(1 * W + 1) * 4:(1 * W + 1) * 4 + 4] = b"\xff\xff\xff\xff"
    assert sample(raw, W, H).one_colour
    assert not any(f.feed(raw) for _ in range(30))
    assert f.health.blocked is None


def test_one_colour_for_the_threshold_is_display_blank_until_the_picture_returns() -> None:
    f = feeder(10)
    black = solid(b"\0\0\0\xff")
    changes = [f.feed(black) for _ in range(11)]  # 0 .. 10 s unchanged
    assert changes == [False] * 10 + [True]
    assert f.health.blocked is not None
    assert f.health.blocked.reason == "display_blank"
    assert f.health.blocked.since == T0 + timedelta(seconds=10)
    assert f.health.state() == {
        "state": "blocked", "reason": "display_blank", "since": "2030-01-02T03:04:15+00:00"
    }
    assert [f.feed(black) for _ in range(30)] == [False] * 30  # it stays blocked
    assert f.feed(solid(b"\0\0\xff\xff")) is True  # another colour: the screen lives
    assert f.health.blocked is None
    assert f.health.state() == {"state": "ok"}


def test_a_still_picture_is_blocked_only_while_someone_works() -> None:
    age: list[float | None] = [None]
    f = feeder(10, input_age=lambda: age[0])
    still = picture()
    assert not any(f.feed(still) for _ in range(30)), "no input known: a still screen is fine"
    age[0] = 40.0  # the last input came before the picture last changed: the user is away
    assert not any(f.feed(still) for _ in range(5))
    f.feed(picture(3))  # a change; then input after it, but not lately
    for _ in range(12):
        age[0] = 8.0
        assert not f.feed(still)
    age[0] = 0.5  # input now, the picture unchanged for more than 10 s
    assert f.feed(still) is True
    assert f.health.blocked is not None
    assert f.health.blocked.reason == "unknown"


def test_the_os_names_the_reason_when_it_knows_one() -> None:
    f = feeder(5, cause=lambda: "wayland_session")
    assert any(f.feed(solid(b"\0\0\0\0")) for _ in range(7))
    assert f.health.blocked is not None
    assert f.health.blocked.reason == "wayland_session"
    g = feeder(5, input_age=lambda: 0.1, cause=lambda: "no_permission")
    assert any(g.feed(picture()) for _ in range(7))  # macOS shows the wallpaper only
    assert g.health.blocked is not None
    assert g.health.blocked.reason == "no_permission"


def test_zero_never_blocks_and_restart_forgets_the_picture() -> None:
    f = feeder(0)
    assert not any(f.feed(solid(b"\0\0\0\xff")) for _ in range(100))
    g = feeder(10)
    black = solid(b"\0\0\0\xff")
    for _ in range(8):
        g.feed(black)
    g.health.restart()  # after a pause: the screen unchanged across it is no evidence
    assert not any(g.feed(black) for _ in range(10))
    assert g.feed(black) is True


def test_a_new_size_counts_as_a_change() -> None:
    f = feeder(3)
    for _ in range(3):
        f.feed(solid(b"\0\0\0\xff"))
    assert f.feed(solid(b"\0\0\0\xff", 320, 240), 320, 240) is False
    assert f.health.blocked is None


def test_the_wayland_session_is_told_by_its_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert screen.wayland_session({"XDG_SESSION_TYPE": "wayland"})
    assert screen.wayland_session({"XDG_SESSION_TYPE": "x11", "WAYLAND_DISPLAY": "wayland-0"})
    assert not screen.wayland_session({"XDG_SESSION_TYPE": "x11", "DISPLAY": ":0"})
    assert not screen.wayland_session({})
    monkeypatch.setattr(screen, "PLATFORM", "linux")
    assert screen.known_cause({"XDG_SESSION_TYPE": "wayland"}) == "wayland_session"
    assert screen.known_cause({"XDG_SESSION_TYPE": "x11"}) is None
    assert screen.capture_allowed() is None  # no such check off macOS
    monkeypatch.setattr(screen, "PLATFORM", "win32")
    assert screen.known_cause({"XDG_SESSION_TYPE": "wayland"}) is None
    advice = screen.advice("wayland_session")
    assert advice is not None
    assert "Xorg" in advice


class FakeCoreGraphics:
    """Stands in for macOS's CoreGraphics (there is none here): answers the preflight."""

    def __init__(self, allowed: bool) -> None:
        self.CGPreflightScreenCaptureAccess = Preflight(allowed)


class Preflight:
    argtypes: tuple[Any, ...] = ()
    restype: Any = None

    def __init__(self, allowed: bool) -> None:
        self.allowed = allowed

    def __call__(self) -> bool:
        return self.allowed


@pytest.mark.parametrize(("allowed", "cause"), [(False, "no_permission"), (True, None)])
def test_macos_asks_the_preflight(
    monkeypatch: pytest.MonkeyPatch, allowed: bool, cause: str | None
) -> None:
    monkeypatch.setattr(screen, "PLATFORM", "darwin")
    monkeypatch.setattr(ctypes, "CDLL", lambda name: FakeCoreGraphics(allowed))
    assert screen.capture_allowed() is allowed
    assert screen.known_cause({"XDG_SESSION_TYPE": "wayland"}) == cause  # Wayland is Linux's
    advice = screen.advice(screen.NO_PERMISSION)
    assert advice is not None
    assert "Privacy & Security → Screen Recording" in advice


def test_macos_without_the_preflight_says_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> Any:
        raise OSError(f"{name}: no such library")

    monkeypatch.setattr(screen, "PLATFORM", "darwin")
    monkeypatch.setattr(ctypes, "CDLL", missing)
    assert screen.capture_allowed() is None
    assert screen.known_cause() is None


def test_input_age_comes_from_the_idle_probe() -> None:
    clock = Clock()
    state = IdleState(idle_seconds=4.0, locked=False)
    calls = 0

    def probe() -> IdleState:
        nonlocal calls
        calls += 1
        return state

    watch = IdleWatch(0, probe=probe, clock=clock)  # idle pausing off: input still measured
    assert watch.input_age() == 4.0
    clock.now += 0.5
    assert watch.input_age() == 4.5
    assert calls == 1
    clock.now += 1
    state = IdleState(idle_seconds=0.2, locked=False)
    assert watch.input_age() == pytest.approx(0.2)
    assert calls == 2

    def broken() -> IdleState:
        raise IdleUnavailable("no X display")

    assert IdleWatch(300, probe=broken).input_age() is None


def test_the_state_goes_to_status_and_heartbeat() -> None:
    blocked = {"state": "blocked", "reason": "display_blank", "since": "2030-01-02T03:04:15Z"}
    line = status_line(blocked)
    assert line == (
        "capture: blocked (display_blank: the display shows one colour only) "
        "since 2030-01-02T03:04:15Z"
    )
    assert status_line({"state": "ok"}) == "capture: ok"
    assert status_line(None) is None
    beat = heartbeat_of({"state": "capture_blocked", "capture": blocked}, 60)
    assert beat.capture == CaptureState(state="blocked", reason="display_blank",
                                        since=datetime(2030, 1, 2, 3, 4, 15, tzinfo=UTC))
    assert beat.to_json()["capture"] == blocked
    assert heartbeat_of({"state": "recording"}, 60).capture is None


@pytest.mark.parametrize(
    ("capture", "field"),
    [
        ({"state": "blocked", "since": "2030-01-02T03:04:15Z"}, "reason"),
        ({"state": "blocked", "reason": "display_blank"}, "since"),
        ({"state": "blocked", "reason": "asleep", "since": "2030-01-02T03:04:15Z"}, "reason"),
        ({"state": "ok", "reason": "unknown"}, "reason"),
        ({"state": "stuck"}, "state"),
    ],
)
def test_bad_capture_states_are_refused(capture: dict[str, Any], field: str) -> None:
    with pytest.raises(WireError) as caught:
        Heartbeat.from_json({"state": "recording", "spool_bytes": 0, "spool_segments": 0,
                             "errors": 0, "capture": capture})
    assert caught.value.field == f"capture.{field}"


def test_a_blocked_capture_is_a_gap_with_a_time_range() -> None:
    gap = GapReport.from_json({"seqs": [], "reason": "capture_blocked",
                               "from": "2030-01-02T03:04:05Z", "to": "2030-01-02T03:09:05Z"})
    assert gap.to_json()["reason"] == "capture_blocked"
    with pytest.raises(WireError) as caught:
        GapReport.from_json({"seqs": [], "reason": "capture_blocked"})
    assert caught.value.field == "from"


def test_the_threshold_is_a_setting(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text("capture_blocked_seconds = 30\n")
    values = config.load_file(path, required=True)
    assert config.resolve(values, {}).capture_blocked_seconds == 30.0
    assert config.resolve(values, {"capture_blocked_seconds": 3.0}).capture_blocked_seconds == 3
    assert config.resolve({}, {}).capture_blocked_seconds == 120.0
    path.write_text("capture_blocked_seconds = -1\n")
    with pytest.raises(config.SettingsFileError, match="capture_blocked_seconds"):
        config.load_file(path, required=True)
