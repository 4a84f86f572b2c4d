"""The broker fixture: env-file parsing, and the real broker serving once per database."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.support.broker import BrokerProcess, parse_env_file
from tests.support.procs import pid_alive


def test_parse_env_file() -> None:
    text = "# secrets\n\nA=1\nexport B = 'two words'\nC=\"x=y\"\nD=\n"
    assert parse_env_file(text) == {"A": "1", "B": "two words", "C": "x=y", "D": ""}


def test_parse_env_file_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="line 2 is not KEY=value"):
        parse_env_file("A=1\nnot an assignment\n")


def test_broker_serves_and_admin_works(broker: BrokerProcess, database_url: str) -> None:
    assert broker.env["BUCKETREEL_DATABASE_URL"] == database_url
    assert pid_alive(broker.pid)
    with urllib.request.urlopen(f"{broker.url}/healthz", timeout=10) as response:  # noqa: S310
        assert response.status == 200
        assert json.loads(response.read())["status"] == "ok"
    tenant = broker.admin("create-tenant", "support-test-tenant")
    assert tenant["tenant_id"]
