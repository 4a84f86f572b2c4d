"""Talking to the running broker and bucket the way clients do, plus row factories.

Nothing here stands in for project code: requests go over HTTP to the real broker process,
set-up goes through the broker's own admin CLI, and bytes go to the real S3 endpoint.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import urllib3
from sqlalchemy import Connection, MetaData, inspect, select

from broker import admin
from broker.db.engine import create_engine
from broker.db.schema import metadata
from broker.settings import Settings
from tests.support import contract
from tests.support.broker import BrokerProcess
from tests.support.s3 import S3Endpoint

PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    headers: dict[str, str]
    raw: bytes


class Api:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(total=30))

    def call(
        self,
        method: str,
        path: str,
        payload: Any = None,
        *,
        token: str | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        sent = dict(headers or {})
        if payload is not None:
            body = json.dumps(payload).encode()
            sent.setdefault("Content-Type", "application/json")
        if token:
            sent["Authorization"] = f"Bearer {token}"
        response = self.http.request(method, self.base_url + path, body=body, headers=sent)
        raw = response.data
        contract.RECORDER.record(
            method, self.base_url + path, response.status,
            response.headers.get("Content-Type", ""), raw,
        )
        parsed: Any = None
        if raw and response.headers.get("Content-Type", "").startswith("application/json"):
            parsed = json.loads(raw)
        return Reply(response.status, parsed, dict(response.headers), raw)


@dataclass(frozen=True)
class Segment:
    data: bytes

    def declaration(self, **override: Any) -> dict[str, Any]:
        declared = {
            "size": len(self.data),
            "sha256": base64.b64encode(hashlib.sha256(self.data).digest()).decode(),
            "md5": base64.b64encode(hashlib.md5(self.data).digest()).decode(),  # noqa: S324
            # A moment ago, and short: the broker admits only times it has seen pass, in
            # seq order without overlap (broker.recordings.bounds), and tests declare their
            # segments one after another in real time.
            "started_at": (datetime.now(UTC) - timedelta(seconds=1)).isoformat(),
            "duration_ms": 1,
        }
        declared.update(override)
        return declared


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def random_segment(size: int = 64 * 1024) -> Segment:
    return Segment(secrets.token_bytes(size))


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    name: str
    bucket: str
    prefix: str


@dataclass(frozen=True)
class Device:
    tenant: Tenant
    user_id: str
    device_id: str
    access_token: str
    refresh_token: str


class Operator:
    """Set-up through the broker's own admin functions, run in this process.

    The same code the `bucketreel-broker admin` CLI runs, without paying a process start
    per row; the CLI itself is tested on its own (tests/broker/test_cli.py).
    """

    def __init__(self, broker: BrokerProcess) -> None:
        self.settings = Settings.from_env({**broker.env, "BUCKETREEL_MIGRATE_ON_START": "0"})

    def run(self, action: Callable[..., Awaitable[dict[str, Any]]], **kwargs: Any) -> Any:
        async def go() -> dict[str, Any]:
            async with admin.context(self.settings) as ctx:
                return await action(ctx, **kwargs)

        return asyncio.run(go())


def make_tenant(broker: BrokerProcess, s3: S3Endpoint, *, prefix: str = "rec") -> Tenant:
    name = f"tenant-{secrets.token_hex(4)}"
    operator = Operator(broker)
    tenant_id = operator.run(admin.create_tenant, name=name)["tenant_id"]
    bucket = s3.create_bucket()
    operator.run(
        admin.set_storage, tenant=tenant_id, bucket=bucket, region=s3.region,
        endpoint_url=s3.url, prefix=prefix, access_key_id=s3.access_key_id,
        secret_access_key=s3.secret_access_key,
        accept_risk=True,  # moto without IAM lets any key list and delete: the self-check says so
    )
    return Tenant(tenant_id, name, bucket, prefix)


def make_user(broker: BrokerProcess, tenant: Tenant, role: str = "employee") -> str:
    email = f"{role}-{secrets.token_hex(4)}@example.test"
    user_id: str = Operator(broker).run(
        admin.create_user, tenant=tenant.tenant_id, email=email, role=role, password=PASSWORD
    )["user_id"]
    return user_id


def enrollment_code(broker: BrokerProcess, tenant: Tenant, user_id: str) -> str:
    code: str = Operator(broker).run(
        admin.enrollment_code, tenant=tenant.tenant_id, user=user_id
    )["code"]
    return code


def enroll(api: Api, broker: BrokerProcess, tenant: Tenant, user_id: str | None = None) -> Device:
    user_id = user_id or make_user(broker, tenant)
    reply = api.call(
        "POST", "/api/v1/devices/enroll",
        {"code": enrollment_code(broker, tenant, user_id), "name": "test workstation"},
    )
    assert reply.status == 201, reply.body
    return Device(
        tenant, user_id, reply.body["device_id"], reply.body["access_token"],
        reply.body["refresh_token"],
    )


def start_recording(api: Api, device: Device) -> str:
    reply = api.call(
        "POST", "/api/v1/recordings", {"started_at": now_iso()}, token=device.access_token
    )
    assert reply.status == 201, reply.body
    recording_id: str = reply.body["recording_id"]
    return recording_id


def put_with_grant(grant: dict[str, Any], data: bytes) -> urllib3.BaseHTTPResponse:
    """Upload as the agent does: exactly the granted method, URL and headers."""
    return urllib3.PoolManager(retries=False).request(
        grant["method"], grant["url"], body=data, headers=grant["headers"]
    )


# Columns a broker's background task changes on its own at any time (the bucket outbox's
# flusher: broker/bucket/flusher.py), left out of snapshots; the rows themselves stay in.
BACKGROUND_COLUMNS = {
    "bucket_outbox": {
        "object_key", "body", "next_attempt_at", "attempts", "delivered_at", "last_error",
    },
}


def parallel(calls: list[Callable[[], Reply]]) -> list[Reply]:
    """Run every call at once (released together by a barrier), each on its own client."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Reply]) -> Reply:
        barrier.wait(timeout=60)
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def settled(table: Any) -> list[Any]:
    """The table's columns but those a background task changes on its own."""
    moving = BACKGROUND_COLUMNS.get(table.name, set())
    return [column for column in table.columns if column.name not in moving]


def snapshot(database_url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, to prove a refused request changed nothing. The tables and
    columns are read from the database itself, so a database at an older migration (whose
    tables lack a later migration's columns) is read as it is."""

    def read_all(sync: Connection) -> dict[str, list[tuple[Any, ...]]]:
        present = set(inspect(sync).get_table_names())
        found = MetaData()
        found.reflect(sync, only=[name for name in metadata.tables if name in present])
        return {
            table.name: sorted(
                (tuple(r) for r in sync.execute(select(*settled(table))).all()), key=repr
            )
            for table in found.sorted_tables
        }

    async def read() -> dict[str, list[tuple[Any, ...]]]:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(read_all)
        finally:
            await engine.dispose()

    return asyncio.run(read())
