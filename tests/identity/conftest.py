"""Identity tests run against their own broker per database (same as `broker`, plus settings).

The broker here trusts `X-Forwarded-For` for the client address (as it would behind a proxy),
so each test can speak from its own address and the per-client login limit of one test never
spills into another; and that limit is low, so the test that trips it stays quick.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.identity.people import Client, Org, make_org
from tests.support.broker import BrokerCommandError, BrokerProcess
from tests.support.procs import MissingDependencyError, ProcessStartError
from tests.support.s3 import S3Endpoint

IDENTITY_ENV = {
    "BUCKETREEL_CLIENT_ADDRESS_HEADER": "X-Forwarded-For",
    "BUCKETREEL_LOGIN_CLIENT_MAX_FAILURES": "8",
}


@pytest.fixture(scope="session")
def broker(database_url: str, session_tmp: Path) -> Iterator[BrokerProcess]:
    with ExitStack() as stack:
        try:
            process = stack.enter_context(
                BrokerProcess(database_url, extra_env=IDENTITY_ENV, log_dir=session_tmp / "logs")
            )
        except (MissingDependencyError, ProcessStartError, BrokerCommandError) as err:
            pytest.fail(f"the broker could not start: {err}", pytrace=False)
        yield process


@pytest.fixture
def client(broker: BrokerProcess) -> Client:
    """An HTTP client speaking from an address of its own."""
    return Client(broker.url)


@pytest.fixture(scope="module")
def org(broker: BrokerProcess, s3_endpoint: S3Endpoint) -> Org:
    return make_org(broker, s3_endpoint)
