from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from tests.conftest import BROKER_DB_ROLE
from tests.support.api import Api, Device, Tenant, enroll
from tests.support.broker import BrokerProcess
from tests.support.postgres import PostgresServer


@pytest.fixture
def device(api: Api, broker: BrokerProcess, tenant: Tenant) -> Device:
    return enroll(api, broker, tenant)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty database; on PostgreSQL owned by the broker's role (FORCE applies)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'broker.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database(f"db_{secrets.token_hex(4)}", owner=BROKER_DB_ROLE)
