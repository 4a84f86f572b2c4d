"""Fixtures for the agent's tests (the suite-wide ones live in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.agent.fakebroker import FakeBroker


@pytest.fixture
def fake_broker() -> Iterator[FakeBroker]:
    broker = FakeBroker()
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
