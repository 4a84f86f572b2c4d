"""Fixtures for the page tests: headless Chromium, and brokers that suit the browser.

  chromium        Browser: Debian's chromium under Playwright, per module (its event loop
                  must not outlive the module: other tests call asyncio.run)
  short_ttl       BrokerProcess: a broker (SQLite) whose view URLs live 10 s, the minimum
  gate            S3Gate: the strict SigV4 gate in front of moto, which checks URL expiry
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.conftest import sqlite_broker
from tests.support.broker import BrokerProcess
from tests.support.s3 import S3Endpoint
from tests.support.s3gate import AccessKey, S3Gate, run_s3_gate
from tests.web.browser import CHROMIUM, CHROMIUM_ARGS, chromium_missing

SHORT_TTL = 10


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    missing = chromium_missing()
    if missing:
        pytest.fail(missing, pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def short_ttl(session_tmp: Path) -> Iterator[BrokerProcess]:
    with ExitStack() as stack:
        yield sqlite_broker(
            stack, session_tmp, "short-ttl", "the short-TTL broker",
            {"BUCKETREEL_VIEW_URL_TTL": str(SHORT_TTL)},
        )


@pytest.fixture(scope="session")
def gate(s3_endpoint: S3Endpoint) -> Iterator[S3Gate]:
    with run_s3_gate(s3_endpoint) as running:
        yield running


@pytest.fixture(scope="session")
def gate_setup_key(gate: S3Gate) -> AccessKey:
    return gate.keys.add(label="test-setup")
