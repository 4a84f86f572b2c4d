"""Housekeeping (`broker.db.housekeeping`): expired tokens, challenges and codes, and failed
logins past their window, are deleted; the record (recordings, segments, grants, gaps, the
audit log) never is. Each test has a database of its own: a sweep at a date a year ahead
would otherwise delete the tokens of every other test's devices."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from sqlalchemy import func, insert, select

from broker.db.database import Database
from broker.db.housekeeping import EXPIRING, sweep
from broker.db.schema import login_failures, metadata
from tests.broker.test_tenant_foreign_keys import populate
from tests.conftest import _start
from tests.identity.people import Client
from tests.support.api import Api
from tests.support.broker import BrokerProcess
from tests.support.s3 import S3Endpoint

SWEPT = [table.name for table in EXPIRING] + [login_failures.name]
KEPT = ["tenants", "users", "devices", "user_sessions", "recordings", "segments",
        "upload_grants", "recording_gaps", "audit_log", "manager_assignments"]
WINDOW = 900  # BUCKETREEL_LOGIN_WINDOW's default
T = TypeVar("T")


def run(url: str, use: Callable[[Database], Awaitable[T]]) -> T:
    async def go() -> T:
        db = Database.from_url(url)
        try:
            return await use(db)
        finally:
            await db.close()

    return asyncio.run(go())


async def row_counts(db: Database) -> dict[str, int]:
    async with db.transaction() as conn:
        return {
            name: int((await conn.execute(select(func.count()).select_from(table))).scalar_one())
            for name, table in metadata.tables.items()
        }


def broker_on(url: str, stack: ExitStack, logs: Path) -> BrokerProcess:
    return _start("a broker of its own database", stack, BrokerProcess(url, log_dir=logs))


def test_a_sweep_deletes_only_what_can_never_matter_again(
    empty_database: str, s3_endpoint: S3Endpoint, session_tmp: Path
) -> None:
    url = empty_database
    with ExitStack() as stack:  # the broker is stopped before the sweeps: none of its own
        broker = broker_on(url, stack, session_tmp / "logs")
        tenant_id = populate(Api(broker.url), broker, s3_endpoint)
        wrong = Client(broker.url).call("POST", "/api/v1/auth/login", {
            "tenant": tenant_id, "email": "nobody@example.test", "password": "x" * 12})
        assert wrong.status == 401, wrong.body  # failed-login rows
    before = run(url, row_counts)
    assert all(before[name] > 0 for name in SWEPT + KEPT), before
    now = datetime.now(UTC)

    nothing = run(url, lambda db: sweep(db, now, login_window=WINDOW))
    assert nothing == dict.fromkeys(SWEPT, 0), "nothing live is deleted"

    soon = run(url, lambda db: sweep(db, now + timedelta(minutes=20), login_window=WINDOW))
    assert soon["mfa_challenges"] == before["mfa_challenges"], "challenges live 5 minutes"
    assert soon["login_failures"] == before["login_failures"], "the 15-minute window is over"
    assert soon["device_refresh_tokens"] == soon["user_refresh_tokens"] == 0, "tokens live on"

    later = run(url, lambda db: sweep(db, now + timedelta(days=400), login_window=WINDOW))
    after = run(url, row_counts)
    assert all(after[name] == 0 for name in SWEPT), after
    assert later["device_refresh_tokens"] == before["device_refresh_tokens"]
    assert {name: after[name] for name in KEPT} == {name: before[name] for name in KEPT}, (
        "the record is never touched"
    )


def test_a_broker_sweeps_when_it_starts(empty_database: str, session_tmp: Path) -> None:
    url = empty_database
    with ExitStack() as stack:
        broker_on(url, stack, session_tmp / "logs")  # migrates the new database
    expired = datetime.now(UTC) - timedelta(seconds=WINDOW + 60)  # out of the window

    async def plant(db: Database) -> None:
        async with db.transaction() as conn:
            await conn.execute(insert(login_failures).values(key_hash="0" * 64, at=expired))

    run(url, plant)
    assert run(url, row_counts)["login_failures"] == 1
    with ExitStack() as stack:
        broker_on(url, stack, session_tmp / "logs")
        deadline = time.monotonic() + 30
        while run(url, row_counts)["login_failures"] and time.monotonic() < deadline:
            time.sleep(0.2)
    assert run(url, row_counts)["login_failures"] == 0, "the start-up sweep ran"
