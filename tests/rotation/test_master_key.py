"""Master-key rotation (`admin rotate-master-key`): every sealed row is re-sealed under the
newest KEK while brokers keep serving, and once the old KEK is dropped everything still opens.

Real processes throughout: brokers on a database of their own (SQLite and PostgreSQL), the
CLI for the rotation, moto's S3 API for the bucket, people signing in with TOTP over HTTP.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from broker.db.engine import create_engine
from broker.db.schema import mfa_challenges, storage_configs, users
from tests.identity.people import login, login_again, make_person, mfa, person
from tests.rotation.conftest import broker_secrets, master_key
from tests.support.api import Api, enroll, make_tenant, random_segment, start_recording
from tests.support.broker import BrokerCommandError, BrokerProcess, run_cli
from tests.support.s3 import S3Endpoint


def versions(database_url: str) -> dict[str, list[str]]:
    """The KEK version of every sealed value, per column (read straight from the database)."""

    async def read() -> dict[str, list[str]]:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                found = {}
                for name, table, blob, version in (
                    ("storage", storage_configs, "secret_sealed", "kek_version"),
                    ("totp", users, "totp_sealed", "totp_kek_version"),
                    ("pending", mfa_challenges, "pending_sealed", "pending_kek_version"),
                ):
                    rows = await conn.execute(
                        select(table.c[version]).where(table.c[blob].is_not(None))
                    )
                    found[name] = sorted(r[0] for r in rows)
                return found
        finally:
            await engine.dispose()

    return asyncio.run(read())


def run_broker(database_url: str, env: dict[str, str], logs: Path) -> BrokerProcess:
    return BrokerProcess(database_url, extra_env=env, log_dir=logs).start()


def grant_works(api: Api, device: Any) -> None:
    """An upload grant needs the tenant's bucket secret, unsealed."""
    recording_id = start_recording(api, device)
    reply = api.call(
        "POST", f"/api/v1/recordings/{recording_id}/segments/0/upload",
        random_segment(1024).declaration(), token=device.access_token,
    )
    assert reply.status == 200, reply.body


def test_rotation_reseals_every_row_and_the_old_key_can_go(
    fresh_database_url: str, s3_endpoint: S3Endpoint, session_tmp: Path
) -> None:
    v1, v2 = master_key(), master_key()
    only_v1 = broker_secrets(f"v1:{v1}")
    both = broker_secrets(f"v1:{v1},v2:{v2}", only_v1)
    only_v2 = broker_secrets(f"v2:{v2}", only_v1)
    logs = session_tmp / "logs"

    # v1 only: a bucket secret, an enrolled TOTP, a TOTP pending in an enrollment challenge
    first = run_broker(fresh_database_url, only_v1, logs)
    try:
        api = Api(first.url)
        tenant = make_tenant(first, s3_endpoint)
        admin = person(api, first, tenant, "admin")
        viewer = person(api, first, tenant, "manager")  # signs in again only at the end
        device = enroll(api, first, tenant)
        newcomer = make_person(first, tenant, "manager")
        pending = login(api, newcomer)
        assert (pending.status, pending.body["mfa"]) == (200, "enroll")
    finally:
        first.stop()
    assert versions(fresh_database_url) == {
        "storage": ["v1"], "totp": ["v1", "v1"], "pending": ["v1", "v1", "v1"],
    }

    # v1 and v2 listed: old rows still open, new ones are sealed under v2
    second = run_broker(fresh_database_url, both, logs)
    try:
        api = Api(second.url)
        assert login_again(api, admin).status == 200
        grant_works(api, device)
        late = person(api, second, tenant, "employee")
        assert versions(fresh_database_url)["totp"] == ["v1", "v1", "v2"]

        # the rotation runs while this broker serves
        out = json.loads(second.cli("admin", "rotate-master-key", "--batch-size", "1"))
        assert out["kek_version"] == "v2"
        assert out["resealed"] == {
            "storage_configs.secret_sealed": 1,
            "users.totp_sealed": 2,  # admin and viewer (the late employee's is v2 already)
            "mfa_challenges.pending_sealed": 3,  # their used enrollments, the pending one
        }, out
        assert set(out["remaining"].values()) == {0}, out
        again = json.loads(second.cli("admin", "rotate-master-key"))
        assert set(again["resealed"].values()) == {0}, "a second run has nothing to do"
    finally:
        second.stop()
    found = versions(fresh_database_url)
    assert {v for column in found.values() for v in column} == {"v2"}, found
    assert (len(found["storage"]), len(found["totp"]), len(found["pending"])) == (1, 3, 4)

    # v1 dropped: everything still opens
    third = run_broker(fresh_database_url, only_v2, logs)
    try:
        api = Api(third.url)
        assert login_again(api, viewer).status == 200
        assert login_again(api, late).status == 200
        finished = mfa(api, pending.body["challenge"], _code_from(pending.body, newcomer))
        assert finished.status == 200, finished.body
        grant_works(api, device)
    finally:
        third.stop()


def _code_from(step: dict[str, Any], someone: Any) -> str:
    from urllib.parse import parse_qs, urlsplit

    someone.secret = parse_qs(urlsplit(step["provisioning_uri"]).query)["secret"][0]
    code: str = someone.next_code()
    return code


def test_without_the_old_key_rotation_refuses_and_changes_nothing(
    fresh_database_url: str, s3_endpoint: S3Endpoint, session_tmp: Path
) -> None:
    v1, v2 = master_key(), master_key()
    only_v1 = broker_secrets(f"v1:{v1}")
    broker = run_broker(fresh_database_url, only_v1, session_tmp / "logs")
    try:
        make_tenant(broker, s3_endpoint)
        env = {**broker.env, **broker_secrets(f"v2:{v2}", only_v1)}
        with pytest.raises(BrokerCommandError) as refused:
            run_cli(["admin", "rotate-master-key"], env)
    finally:
        broker.stop()
    message = str(refused.value)
    assert "exited with code 1" in message
    assert "storage_configs.secret_sealed" in message
    assert "master key v1 is not in BUCKETREEL_MASTER_KEYS" in message
    assert v1 not in message
    assert v2 not in message
    assert versions(fresh_database_url)["storage"] == ["v1"]
