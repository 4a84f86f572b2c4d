"""A manager finds a person's day on its timeline and watches it in one player.

The day holds four recordings. Two were made earlier in the day through the broker's own
services run in this process at chosen times (`in_process` with a `Clock`): real H.264
segments from the agent's encoder, uploaded to moto through the broker's presigned PUTs and
verified by its HeadObject, with the pauses their agent reports (idle, screen locked,
capture blocked). One is made by the real agent program on the suite's Xvfb display. The
last is live: started through the HTTP API, it gets a new verified segment while the player
is open. Headless Chromium checks the timeline against the broker's API route, plays from a
click, crosses from one recording into the next, picks up the live segment, and counts every
view URL against the segments played.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit
from zoneinfo import ZoneInfo

import msgspec
import numpy as np
import pytest
from playwright.sync_api import Browser, Page, Request

from agent.encode import Segment, SegmentEncoder
from broker import admin
from broker.identity import Principal
from broker.services import Services
from shared.wire import GapReport
from tests.identity.people import Client, Clock, Person, in_process, make_person
from tests.support.api import Device, Operator, Tenant, enroll, make_tenant, put_with_grant
from tests.support.broker import BrokerProcess
from tests.support.display import XDisplay
from tests.support.s3 import S3Endpoint
from tests.web.browser import off_thread, pixels, sign_in, wait_until
from tests.web.test_player import record_real_screen

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

DOCS = Path(__file__).resolve().parents[2] / "docs"
FPS = 4
FRAME_MS = 1000 / FPS
SEGMENT_MS = 2000


def zone_at_noon(now: datetime) -> str:
    """A fixed-offset IANA zone in which `now` is about noon: the whole test day (the last
    forty minutes) falls on one calendar day there, whenever the suite runs."""
    offset = 12 - now.hour
    if offset > 14:
        offset -= 24
    if offset < -12:
        offset += 24
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def encoded(seq: int, started_at: datetime, colour: tuple[int, int, int]) -> Segment:
    """A real segment (the agent's H.264 encoder): a coloured screen with a moving bar."""
    encoder = SegmentEncoder(
        seq=seq, fps=FPS, width=160, height=120, first_tick=0, started_at=started_at
    )
    for tick in range(SEGMENT_MS * FPS // 1000):
        image = np.zeros((120, 160, 4), np.uint8)
        image[..., :3] = colour
        image[:, tick * 16 : tick * 16 + 24, :3] = 255
        image[40 + seq * 10 : 60 + seq * 10, :, :3] = 20
        encoder.add(image.tobytes(), tick)
    return encoder.finish()


@dataclass
class Made:
    recording_id: str
    segments: list[datetime]  # each one's start


class Workstation:
    """The employee's API-enrolled device, driven through the broker's services at the
    times the test chooses."""

    def __init__(self, broker: BrokerProcess, device: Device) -> None:
        self.broker = broker
        self.principal = Principal(
            kind="device", subject=device.device_id, tenant_id=device.tenant.tenant_id,
            user_id=device.user_id, role="employee",
        )

    def at(self, moment: datetime, use: Callable[[Services], Any]) -> Any:
        return in_process(self.broker, Clock(moment), use)

    def start(self, at: datetime) -> str:
        async def go(s: Services) -> str:
            return await s.recordings.start(self.principal, at)

        return str(self.at(at, go))

    def segment(self, recording_id: str, seq: int, at: datetime, colour: tuple[int, ...]) -> None:
        made = encoded(seq, at, (colour[0], colour[1], colour[2]))

        async def grant(s: Services) -> Any:
            return await s.recordings.grant_upload(
                self.principal, recording_id, seq, made.upload_request()
            )

        ends = at + timedelta(milliseconds=made.duration_ms + 500)
        granted = msgspec.to_builtins(self.at(ends, grant))
        assert put_with_grant(granted, made.data).status == 200

        async def complete(s: Services) -> str:
            return await s.recordings.complete(self.principal, recording_id, seq)

        assert self.at(ends, complete) == "verified"

    def pause(self, recording_id: str, reason: str, start: datetime, end: datetime) -> None:
        async def report(s: Services) -> Any:
            gap = GapReport(seqs=[], reason=reason, from_=start, to=end)  # type: ignore[arg-type]
            return await s.recordings.report_gap(self.principal, recording_id, gap)

        self.at(end, report)

    def finish(self, recording_id: str, at: datetime) -> None:
        async def go(s: Services) -> Any:
            return await s.recordings.finish(self.principal, recording_id)

        self.at(at, go)


@dataclass
class Scene:
    broker: BrokerProcess
    tenant: Tenant
    manager: Person
    employee: Person
    device: Device
    zone: str
    day: str
    a: Made  # idle pause inside
    b: Made  # screen locked before it, capture blocked inside
    real: str  # the real agent's
    live: Made  # still recording
    api: Client


def record_day(
    broker: BrokerProcess, s3: S3Endpoint, display: str, home: Path
) -> Scene:
    tenant = make_tenant(broker, s3)
    manager, employee = (make_person(broker, tenant, role) for role in ("manager", "employee"))
    Operator(broker).run(
        admin.assign, tenant=tenant.tenant_id, manager=manager.email, employee=employee.email
    )
    api = Client(broker.url)
    device = enroll(api, broker, tenant, employee.user_id)
    station = Workstation(broker, device)
    now = datetime.now(UTC).replace(microsecond=0)
    zone = zone_at_noon(now)

    t0 = now - timedelta(minutes=40)
    a_starts = [t0, t0 + timedelta(seconds=2), t0 + timedelta(minutes=3)]
    a = Made(station.start(t0), a_starts)
    for seq, at in enumerate(a_starts):
        if seq == 2:
            station.pause(a.recording_id, "idle", t0 + timedelta(seconds=4), at)
        station.segment(a.recording_id, seq, at, (30, 90, 160))
    a_end = a_starts[-1] + timedelta(seconds=2)
    t1 = now - timedelta(minutes=30)
    station.pause(a.recording_id, "locked", a_end, t1)
    station.finish(a.recording_id, t1)

    b_starts = [t1, t1 + timedelta(seconds=2), t1 + timedelta(minutes=5)]
    b = Made(station.start(t1), b_starts)
    for seq, at in enumerate(b_starts):
        if seq == 2:
            station.pause(b.recording_id, "capture_blocked", t1 + timedelta(seconds=4), at)
        station.segment(b.recording_id, seq, at, (160, 60, 40))
    station.finish(b.recording_id, b_starts[-1] + timedelta(seconds=3))

    real = record_real_screen(broker, tenant, employee.user_id, home, display)
    time.sleep(3)  # a few seconds of silence between the real recording and the live one
    live_start = datetime.now(UTC) - timedelta(seconds=2.5)
    reply = api.call(
        "POST", "/api/v1/recordings", {"started_at": live_start.isoformat()},
        token=device.access_token,
    )
    assert reply.status == 201, reply.body
    live = Made(reply.body["recording_id"], [])
    upload_live(api, device, live, live_start)
    day = now.astimezone(ZoneInfo(zone)).date().isoformat()
    return Scene(broker, tenant, manager, employee, device, zone, day, a, b, real, live, api)


def upload_live(api: Client, device: Device, live: Made, at: datetime) -> None:
    """The live recording's next segment, as its agent sends it: declare, PUT, complete."""
    seq = len(live.segments)
    made = encoded(seq, at, (40, 150, 60))
    path = f"/api/v1/recordings/{live.recording_id}/segments/{seq}"
    declared = msgspec.to_builtins(made.upload_request())
    grant = api.call("POST", path + "/upload", declared, token=device.access_token)
    assert grant.status == 200, grant.body
    assert put_with_grant(grant.body, made.data).status == 200
    done = api.call("POST", path + "/complete", token=device.access_token)
    assert done.status == 200, done.body
    live.segments.append(at)


@pytest.fixture(scope="module")
def scene(
    broker: BrokerProcess, s3_endpoint: S3Endpoint, xvfb: XDisplay,
    tmp_path_factory: pytest.TempPathFactory,
) -> Scene:
    return off_thread(
        record_day, broker, s3_endpoint, xvfb.display, tmp_path_factory.mktemp("agent")
    )


@pytest.fixture(scope="module")
def page(scene: Scene, chromium: Browser) -> Page:
    return sign_in(chromium, scene.broker.url, scene.manager, timezone_id=scene.zone)


def ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def the_day(page: Page, scene: Scene) -> dict[str, Any]:
    reply = page.request.get(
        f"/api/v1/employees/{scene.employee.user_id}/days/{scene.day}?"
        + urlencode({"zone": scene.zone})
    )
    assert reply.status == 200, reply.text()
    body: dict[str, Any] = reply.json()
    return body


def day_page(page: Page, scene: Scene, view: tuple[int, int] | None = None) -> None:
    path = f"/employees/{scene.employee.user_id}?day={scene.day}"
    page.goto(path + (f"#view={view[0]}-{view[1]}" if view else ""))
    page.wait_for_selector("#timeline")
    wait_until(page, "document.getElementById('window-label').textContent !== ''")
    if view:
        wait_until(page, f"document.getElementById('timeline').dataset.windowStart === '{view[0]}'")


def gap_starting(day: dict[str, Any], at: datetime) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        g for g in day["gaps"] if abs(parse(g["start"]) - at) < timedelta(seconds=1)
    ]
    assert len(found) == 1, (day["gaps"], at)
    return found[0]


def test_the_timeline_shows_each_gap_with_its_reason_where_the_broker_says(
    scene: Scene, page: Page
) -> None:
    day = the_day(page, scene)
    assert day["zone"] == scene.zone
    assert day["live"] is True
    assert [r["recording_id"] for r in day["recordings"]] == [
        scene.a.recording_id, scene.b.recording_id, scene.real, scene.live.recording_id,
    ]
    a, b = scene.a.segments, scene.b.segments
    idle = gap_starting(day, a[1] + timedelta(seconds=2))
    locked = gap_starting(day, a[2] + timedelta(seconds=2))
    blocked = gap_starting(day, b[1] + timedelta(seconds=2))
    silent = gap_starting(day, b[2] + timedelta(seconds=2))
    assert (idle["kind"], idle["label"], parse(idle["end"])) == ("idle", "idle", a[2])
    assert (locked["kind"], locked["label"]) == ("locked", "screen locked")
    assert (blocked["kind"], blocked["label"]) == ("capture_blocked", "screen capture blocked")
    assert silent["kind"] == "silent"
    assert silent["reasons"] == []
    assert "silent or offline" in silent["label"]

    day_page(page, scene)
    timeline = page.locator("#timeline")
    shown = [int(timeline.get_attribute(f"data-window-{e}") or 0) for e in ("start", "end")]
    assert shown[0] <= ms(a[0])
    assert shown[1] >= ms(scene.live.segments[0])
    assert shown[1] - shown[0] <= 3 * 3600_000, "it opens on the recorded hours, not 24 h"
    DOCS.mkdir(exist_ok=True)
    page.locator("main").screenshot(path=str(DOCS / "day.png"))

    page.click("button[data-zoom=day]")
    start, end = parse(day["start"]), parse(day["end"])
    box = page.locator("#day-svg rect.bg").bounding_box()
    assert box is not None
    for gap in day["gaps"]:
        piece = page.locator(f"#day-svg a.piece.gap[data-start='{ms(parse(gap['start']))}']")
        assert piece.count() == 1, gap
        assert gap["kind"] in (piece.get_attribute("class") or "")
        assert gap["label"] in (piece.get_attribute("aria-label") or "")
        drawn = piece.locator("rect").bounding_box()
        assert drawn is not None
        expected = box["x"] + (parse(gap["start"]) - start) / (end - start) * box["width"]
        assert abs(drawn["x"] - expected) < 1.5, (gap, drawn, expected)
    words = page.locator("ul.gaps li").all_inner_texts()
    assert any("idle" in w for w in words)
    assert any("screen locked" in w for w in words)
    assert any("silent or offline" in w for w in words)

    # Keyboard: the idle gap is a focusable link; Enter plays from where recording resumes.
    page.click("button[data-zoom='900']")
    shown = [int(timeline.get_attribute(f"data-window-{e}") or 0) for e in ("start", "end")]
    assert shown[1] - shown[0] == 900_000
    idle_piece = page.locator(f"#day-svg a.piece.gap[data-start='{ms(parse(idle['start']))}']")
    day_page(page, scene, (ms(a[0]) - 60_000, ms(a[0]) + 14 * 60_000))
    idle_piece.focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "at" in parse_qs(urlsplit(page.url).query), (page.url, idle_piece.get_attribute("href"))
    at = parse(parse_qs(urlsplit(page.url).query)["at"][0])
    assert at == a[2]
    page.wait_for_selector("#player")
    page.go_back()
    assert f"day={scene.day}" in page.url, "Back keeps the chosen day"

    # The calendar links the recorded day.
    day_link = page.locator(f"table.calendar a[href='?day={scene.day}']")
    assert day_link.get_attribute("aria-current") == "date"


def test_a_click_on_the_timeline_starts_playback_at_that_moment(
    scene: Scene, page: Page
) -> None:
    b = scene.b.segments
    day_page(page, scene, (ms(b[0]) - 2000, ms(b[0]) + 8000))  # 10 s across
    rec = page.locator(f"#day-svg a.piece.rec[data-start='{ms(b[0])}'] rect")
    drawn = rec.bounding_box()
    svg = page.locator("#day-svg rect.bg").bounding_box()
    assert drawn is not None
    assert svg is not None
    x = drawn["x"] + drawn["width"] * 0.6
    expected = ms(b[0]) - 2000 + (x - svg["x"]) / svg["width"] * 10_000
    with page.expect_navigation():
        page.mouse.click(x, drawn["y"] + drawn["height"] / 2)
    at = ms(parse(parse_qs(urlsplit(page.url).query)["at"][0]))
    assert abs(at - expected) <= 10_000 / svg["width"] + 1, (at, expected)
    wait_until(page, "document.getElementById('player').dataset.wall !== undefined")
    wall = int(page.locator("#player").get_attribute("data-wall") or 0)
    assert abs(wall - at) <= FRAME_MS, f"the player's clock {wall} is within a frame of {at}"
    assert page.locator("#player").get_attribute("data-recording") == scene.b.recording_id
    assert "Ready at" in page.locator("#status").inner_text()


def test_the_day_player_skips_gaps_saying_why_and_crosses_into_the_next_recording(
    scene: Scene, page: Page
) -> None:
    a, b = scene.a.segments, scene.b.segments
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request))
    start = a[1] + timedelta(seconds=1)
    page.goto(
        f"/employees/{scene.employee.user_id}/play?"
        + urlencode({"day": scene.day, "at": start.isoformat()})
    )
    assert scene.employee.email in page.title()
    wait_until(page, "document.getElementById('player').dataset.wall !== undefined")
    player = page.locator("#player")

    def minted() -> list[str]:
        return (player.get_attribute("data-minted") or "").split()

    def views() -> list[Request]:
        return [r for r in requests if r.url.endswith("/view")]

    assert minted() == [f"{scene.a.recording_id}/1"], "only the still's segment, before Play"
    assert len(views()) == 1
    still = pixels(page.locator("#video").screenshot())
    assert still.std() > 10, "a picture before Play, not a black box"
    assert page.locator("#live").is_visible(), "a recording of the day is live"
    wait_until(page, "document.getElementById('markers').children.length >= 4")

    page.click("#play")
    wait_until(page, "document.getElementById('video').currentTime > 0.2")
    assert len(views()) == 1, "the playing segment's URL only"
    wait_until(page, f"document.getElementById('player').dataset.seq === '2'"
               f" && document.getElementById('player').dataset.recording"
               f" === '{scene.a.recording_id}'")
    assert "Skipped 2 min 56 s: idle" in (player.get_attribute("data-note") or "")
    wait_until(
        page, f"document.getElementById('player').dataset.recording === '{scene.b.recording_id}'"
        " && document.getElementById('video').currentTime > 0.2",
    )
    assert "screen locked" in (player.get_attribute("data-note") or "")
    assert "Skipped 6 min 58 s: screen locked" in page.locator("#status").inner_text()
    page.click("#play")  # pause
    wall = int(player.get_attribute("data-wall") or 0)
    assert ms(b[0]) <= wall < ms(b[0]) + SEGMENT_MS
    sent = [r.url.split("/api/v1/recordings/")[1].removesuffix("/view") for r in views()]
    assert sent == [k.replace("/", "/segments/") for k in minted()]
    assert minted() == [
        f"{scene.a.recording_id}/1", f"{scene.a.recording_id}/2", f"{scene.b.recording_id}/0"
    ], "one view URL per segment played, each just before it"
    recorded = sum(s["duration_ms"] for r in the_day(page, scene)["recordings"]
                   for s in r["segments"])
    total = f"{recorded // 60000}:{recorded // 1000 % 60:02d}"
    assert page.locator("#elapsed").inner_text() == f"0:06 / {total}", "A's 6 s played"
    assert page.locator("#clock").inner_text().endswith(scene.zone)

    page.click("#fullscreen")
    wait_until(page, "document.fullscreenElement === document.getElementById('player')")
    page.click("#fullscreen")
    wait_until(page, "document.fullscreenElement === null")

    page.keyboard.press("4")
    assert page.locator("#speed").input_value() == "4"
    href = page.locator("#back").get_attribute("href") or ""
    assert href.endswith(f"?day={scene.day}")


def test_a_live_recording_plays_on_into_its_new_segment(scene: Scene, page: Page) -> None:
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request))
    day = the_day(page, scene)
    (real,) = [r for r in day["recordings"] if r["recording_id"] == scene.real]
    last = real["segments"][-1]
    page.goto(
        f"/employees/{scene.employee.user_id}/play?"
        + urlencode({"day": scene.day, "at": last["started_at"]})
    )
    wait_until(page, "document.getElementById('player').dataset.wall !== undefined")
    player = page.locator("#player")
    assert player.get_attribute("data-recording") == scene.real, "the real agent's recording"
    before = int(player.get_attribute("data-segments") or 0)
    page.click("#play")
    wait_until(
        page, f"document.getElementById('player').dataset.recording"
        f" === '{scene.live.recording_id}'", timeout=30,
    )
    off_thread(
        upload_live, scene.api, scene.device, scene.live,
        scene.live.segments[0] + timedelta(milliseconds=SEGMENT_MS),
    )
    wait_until(page, f"+document.getElementById('player').dataset.segments === {before + 1}",
               timeout=30)
    wait_until(
        page, "document.getElementById('player').dataset.seq === '1'"
        f" && document.getElementById('player').dataset.recording === "
        f"'{scene.live.recording_id}' && document.getElementById('video').currentTime > 0.3",
        timeout=30,
    )
    page.click("#play")  # pause on the new segment's picture
    assert page.locator("#live").is_visible()
    minted = (player.get_attribute("data-minted") or "").split()
    assert minted == [
        f"{scene.real}/{last['seq']}", f"{scene.live.recording_id}/0",
        f"{scene.live.recording_id}/1",
    ], "each segment's view URL minted once, when it came to play"
    assert len([r for r in requests if r.url.endswith("/view")]) == len(minted)
    shot = page.screenshot(type="png")
    assert len(shot) < 400_000
    (DOCS / "day-player.png").write_bytes(shot)
