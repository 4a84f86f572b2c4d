"""Replicas of the broker on one PostgreSQL database (tests/support/replicas.py)."""

from __future__ import annotations

import secrets

import pytest

from tests.conftest import BROKER_DB_ROLE
from tests.support.postgres import PostgresServer


@pytest.fixture
def shared_database(postgres_server: PostgresServer) -> str:
    """A fresh PostgreSQL database owned by the broker's role (row-level security applies)."""
    return postgres_server.create_database(
        f"replicas_{secrets.token_hex(4)}", owner=BROKER_DB_ROLE
    )
