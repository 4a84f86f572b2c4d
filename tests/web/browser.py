"""Headless Debian Chromium driven by Playwright, and people signing in through the pages.

Playwright's own browser download is impossible here, so the browser is Debian's `chromium`
(scripts/install.sh installs it). Playwright's sync API keeps an event loop running on this
thread, so set-up code that calls `asyncio.run` (the operator helpers) goes through
`off_thread`.
"""

from __future__ import annotations

import concurrent.futures
import io
import os
import re
import time
from collections.abc import Callable
from typing import TypeVar

import av
import numpy as np
import pyotp
from playwright.sync_api import Browser, Page
from playwright.sync_api import Error as PlaywrightError

from tests.identity.people import Person, step_now
from tests.support.api import PASSWORD
from tests.support.procs import INSTALL_HINT

T = TypeVar("T")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


def chromium_missing() -> str | None:
    if os.access(CHROMIUM, os.X_OK):
        return None
    return f"{CHROMIUM} not found (Debian's chromium drives the page tests): {INSTALL_HINT}"


def off_thread(fn: Callable[..., T], *args: object, **kwargs: object) -> T:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args, **kwargs).result()


def code_for(person: Person) -> str:
    """A TOTP code this person has not used yet (each time step is accepted once)."""
    step = max(step_now(), person.last_step + 1)
    person.last_step = step
    return pyotp.TOTP(person.secret).generate_otp(step)


def sign_in(
    browser: Browser, base_url: str, person: Person, *, timezone_id: str | None = None,
    viewport: tuple[int, int] = (1100, 820),
) -> Page:
    """Password, then TOTP, through the pages; enrolls TOTP on the first sign-in. The
    browser's time zone is the machine's unless `timezone_id` names one."""
    context = browser.new_context(
        base_url=base_url, viewport={"width": viewport[0], "height": viewport[1]},
        timezone_id=timezone_id,
    )
    page = context.new_page()
    page.goto("/signin")
    page.fill("input[name=tenant]", person.tenant.name)
    page.fill("input[name=email]", person.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    if page.locator("code.secret").count():
        person.secret = page.locator("code.secret").inner_text().strip()
        assert page.locator("svg.qr path").count() == 1, "the enrollment page shows a QR code"
    page.fill("input[name=code]", code_for(person))
    page.click("button[type=submit]")
    if page.locator("ol.codes").count():
        person.recovery_codes = page.locator("ol.codes li").all_inner_texts()
        page.click("text=Continue")
    page.wait_for_url(base_url + "/")
    return page


def day_page(user_id: str) -> re.Pattern[str]:
    """The address of an employee's day page, whatever its script adds after loading.

    The page's script writes its day (`?day=`) and its window (`#view=`) into the address
    with `history.replaceState`, which may happen before `wait_for_url` first looks: a
    glob for the bare path would then wait for a navigation that never comes.
    """
    return re.compile(rf"/employees/{re.escape(user_id)}(\?day=[0-9-]+)?(#view=[0-9-]+)?$")


def wait_until(page: Page, expression: str, *, timeout: float = 20.0) -> None:
    """Poll a JS expression until it is truthy (`page.wait_for_function` would need
    `unsafe-eval`, which the pages' CSP rightly refuses)."""
    deadline = time.monotonic() + timeout
    while not _evaluate_between_navigations(page, expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout} s: {expression}")
        page.wait_for_timeout(100)


def _evaluate_between_navigations(page: Page, expression: str) -> object:
    """The value of `expression`, or False while the page is navigating (its JS context
    is replaced then; the next poll reads the new page)."""
    try:
        return page.evaluate(expression)
    except PlaywrightError as error:
        if "Execution context was destroyed" in str(error):
            return False
        raise


def pixels(png: bytes) -> np.ndarray:
    """A PNG (a screenshot) as an RGB array, decoded with PyAV."""
    with av.open(io.BytesIO(png), format="png_pipe") as container:
        frame = next(container.decode(video=0))
        return frame.to_ndarray(format="rgb24")
