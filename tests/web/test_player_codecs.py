"""The players and a segment's codec, in Debian's headless Chromium: an AV1 recording the real
agent made at the av1 level plays (pixels on the screen), and a segment this
browser cannot decode (HEVC: Debian's Chromium has no decoder for it) is met with a message
saying what to do instead of a black box: before any view URL is minted when the segment's
codec is declared, and on the media error when an agent declared none."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import av
import numpy as np
import pytest
from playwright.sync_api import Browser, Page, Response

from broker import admin
from tests.identity.people import Client, Person, make_person
from tests.support.api import (
    Device,
    Operator,
    Segment,
    enroll,
    make_tenant,
    put_with_grant,
    start_recording,
)
from tests.support.broker import BrokerProcess
from tests.support.display import XDisplay
from tests.support.s3 import S3Endpoint
from tests.web.browser import off_thread, pixels, sign_in, wait_until
from tests.web.test_player import record_real_screen

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

HEVC = "hev1.1.6.L63.90"  # what an HEVC (Main, level 2.1) segment is, as RFC 6381 names it


@dataclass
class Scene:
    broker: BrokerProcess
    manager: Person
    employee: Person
    av1_recording: str
    hevc_declared: str  # a recording whose HEVC segment says so
    hevc_undeclared: str  # the same bytes from an agent that declared no codec


def hevc_segment() -> bytes:
    """Two seconds of a moving test pattern, HEVC in MP4 (libx265, the PyAV wheel's)."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx265", rate=Fraction(2))
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.options = {"x265-params": "log-level=error"}
        for i in range(4):
            picture = np.full((240, 320, 3), 40 + 50 * i, dtype=np.uint8)
            picture[60:180, 40 + 30 * i : 140 + 30 * i] = (250, 200, 20)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def uploaded(client: Client, device: Device, data: bytes, codec: str | None) -> str:
    """A recording of `device` with `data` as its one verified segment."""
    recording_id = start_recording(client, device)
    time.sleep(2.5)  # the segment's 2 s lie between the recording's start and now
    declared = Segment(data).declaration(
        started_at=(datetime.now(UTC) - timedelta(seconds=2.2)).isoformat(), duration_ms=2000,
        **({} if codec is None else {"codec": codec}),
    )
    path = f"/api/v1/recordings/{recording_id}/segments/0"
    grant = client.call("POST", path + "/upload", declared, token=device.access_token)
    assert grant.status == 200, grant.body
    assert put_with_grant(grant.body, data).status == 200
    done = client.call("POST", path + "/complete", token=device.access_token)
    assert done.status == 200, done.body
    return recording_id


@pytest.fixture(scope="module")
def scene(
    broker: BrokerProcess, s3_endpoint: S3Endpoint, xvfb: XDisplay,
    tmp_path_factory: pytest.TempPathFactory,
) -> Scene:
    tenant = off_thread(make_tenant, broker, s3_endpoint)
    manager, employee = (off_thread(make_person, broker, tenant, role)
                         for role in ("manager", "employee"))
    off_thread(Operator(broker).run, admin.assign, tenant=tenant.tenant_id,
               manager=manager.email, employee=employee.email)
    av1 = record_real_screen(
        broker, tenant, employee.user_id, tmp_path_factory.mktemp("agent"), xvfb.display,
        ("--fps", "2", "--segment-seconds", "2", "--duration", "4.5",
         "--quality", "av1"),
    )
    client = Client(broker.url)
    device = off_thread(enroll, client, broker, tenant, employee.user_id)
    data = hevc_segment()
    declared = uploaded(client, device, data, HEVC)
    undeclared = uploaded(client, device, data, None)
    return Scene(broker, manager, employee, av1, declared, undeclared)


@pytest.fixture(scope="module")
def page(scene: Scene, chromium: Browser) -> Page:
    return sign_in(chromium, scene.broker.url, scene.manager)


def test_this_chromium_plays_av1_and_not_hevc(page: Page) -> None:
    """The premise, asked of the browser itself (no page code involved)."""
    said = page.evaluate(
        "types => types.map(t => document.createElement('video').canPlayType(t))",
        ['video/mp4; codecs="av01.0.08M.08"', f'video/mp4; codecs="{HEVC}"'],
    )
    assert said[0] in ("probably", "maybe"), said
    assert said[1] == "", said


def test_an_av1_recording_from_the_agent_plays(scene: Scene, page: Page) -> None:
    page.goto(f"/recordings/{scene.av1_recording}")
    codecs = set(page.locator("#segments li").evaluate_all(
        "items => items.map(li => li.dataset.codec)"))
    assert len(codecs) == 1, codecs
    assert codecs.pop().startswith("av01.0."), "declared by the agent itself"
    page.click("#play")
    wait_until(page, "document.getElementById('video').currentTime > 0.4")
    page.click("#play")  # pause on the picture
    assert page.locator("#status").inner_text() == ""
    frame = pixels(page.locator("#video").screenshot())
    assert frame.std() > 10, "the video area shows a picture, not a uniform colour"
    assert frame.mean() > 20, "the video area is not black"
    assert len(np.unique(frame.reshape(-1, 3), axis=0)) > 10


def test_a_declared_codec_the_browser_lacks_is_said_before_any_view_is_minted(
    scene: Scene, page: Page
) -> None:
    responses: list[Response] = []
    page.on("response", lambda reply: responses.append(reply))
    page.goto(f"/recordings/{scene.hevc_declared}")
    page.click("#play")
    wait_until(page, "document.getElementById('status').textContent.includes('cannot play')")
    said = page.locator("#status").inner_text()
    assert said.startswith("This recording uses HEVC, which this browser cannot play"), said
    assert "Chrome, Edge or Firefox" in said
    assert page.locator("#player").get_attribute("data-unplayable") == HEVC
    assert page.locator("#play").inner_text() == "Play"
    assert [r for r in responses if r.url.endswith("/view")] == [], "nothing was minted"

    # the day player says the same
    day = datetime.now(UTC).date().isoformat()
    page.goto(f"/employees/{scene.employee.user_id}/play?day={day}")
    wait_until(page, "document.getElementById('player').dataset.segments !== undefined")
    page.locator("#seek").evaluate(
        "(s, ms) => { s.value = ms; s.dispatchEvent(new Event('change')); }",
        int(page.locator("#seek").get_attribute("max") or 0) - 3000,  # the declared one
    )
    wait_until(page, "document.getElementById('status').textContent.includes('cannot play')")
    assert "uses HEVC, which this browser cannot play" in page.locator("#status").inner_text()


def test_an_undeclared_segment_the_browser_cannot_decode_is_said_not_shown_black(
    scene: Scene, page: Page
) -> None:
    page.goto(f"/recordings/{scene.hevc_undeclared}")
    page.click("#play")
    wait_until(page, "document.getElementById('status').textContent.includes('could not be "
                     "played')", timeout=30)
    said = page.locator("#status").inner_text()
    assert said.startswith("This segment could not be played in this browser: "), said
    assert "Chrome, Edge or Firefox" in said
