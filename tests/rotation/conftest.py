"""Fixtures for tests that run brokers of their own (own secrets, own database).

  fresh_database_url  str: an empty database of its own, "sqlite" / "postgresql" (both run)
  broker_secrets      function: a complete set of broker secrets with the master keys given
  s3_gate, setup_key  the strict SigV4 gate in front of moto and the tests' set-up key,
                      imported from tests/storage/conftest.py (same definitions, not copies)
"""

from __future__ import annotations

import base64
import secrets
import tempfile
from pathlib import Path

import pytest

from tests.conftest import BROKER_DB_ROLE
from tests.storage.conftest import s3_gate as s3_gate
from tests.storage.conftest import setup_key as setup_key
from tests.support.postgres import PostgresServer


def master_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def broker_secrets(master_keys: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """Session and HMAC keys (kept from `base` when given) and these master keys."""
    base = base or {
        "BUCKETREEL_SECRET_KEY": secrets.token_urlsafe(48),
        "BUCKETREEL_HMAC_KEY": secrets.token_urlsafe(48),
    }
    return {
        "BUCKETREEL_SECRET_KEY": base["BUCKETREEL_SECRET_KEY"],
        "BUCKETREEL_HMAC_KEY": base["BUCKETREEL_HMAC_KEY"],
        "BUCKETREEL_MASTER_KEYS": master_keys,
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_database_url(request: pytest.FixtureRequest, session_tmp: Path) -> str:
    if request.param == "sqlite":
        directory = Path(tempfile.mkdtemp(prefix="sqlite-rotation-", dir=session_tmp))
        return f"sqlite+aiosqlite:///{directory / 'broker.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database(f"rotation_{secrets.token_hex(4)}", owner=BROKER_DB_ROLE)
