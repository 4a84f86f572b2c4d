"""The benchmark's fleet: tenants with storage, and N enrolled devices, each recording.

Tenants and their storage go through the broker's own admin functions (`broker.admin`, the
code the `bucketreel-broker admin` CLI runs, storage self-check included). Enrolling 10,000
devices through `POST /api/v1/devices/enroll` would take minutes (a code per device, each
made and claimed in its own transaction), so the devices are written in bulk instead, with
the broker's own schema, token hashing (`broker.auth.secrets.token_hash`, the device refresh
purpose) and token signer (`broker.auth.tokens.TokenSigner`, the broker's key): per device a
person, the device row with an Ed25519 custody key, a refresh token and one open recording,
in a few multi-row INSERTs per table. What the bulk path leaves out is the enrollment's own
audit entries and its device-cap check; everything the device path reads is as enrollment
writes it.

Segments need their object in the bucket before completion (its `HeadObject`): the objects
the run will complete are put into moto before the load starts (`upload_objects`), with the
bytes, Content-MD5 and SHA-256 checksum the agent's PUT would carry, so completion checks a
real object and the load measures the broker, not moto taking PUTs.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import insert, text

from broker import admin
from broker.auth.secrets import new_token, token_hash
from broker.auth.tokens import TokenSigner
from broker.db.schema import device_refresh_tokens, devices, recordings, users
from broker.db.scope import TenantScope
from broker.devices.enrollment import REFRESH_PURPOSE
from broker.identity import Principal
from broker.settings import Settings
from shared.custody import encode_public_key
from shared.keys import SEGMENT_CONTENT_TYPE, segment_key
from tests.support.broker import BrokerProcess
from tests.support.s3 import S3Endpoint

PREFIX = "rec"
SEGMENT_BYTES = 2048
CHUNK = 1000  # rows per INSERT
RECORDING_AGE = timedelta(minutes=30)  # each recording started this long before the run


@dataclass(slots=True)
class Device:
    tenant_id: str
    user_id: str
    device_id: str
    recording_id: str
    key: Ed25519PrivateKey
    access_token: str
    refresh_token: str
    recording_start: datetime
    next_seq: int = 0
    prev: str = "0" * 64  # the custody chain's previous record (GENESIS first)


@dataclass(frozen=True, slots=True)
class Content:
    """The one segment's bytes every grant declares (each key holds its own copy)."""

    data: bytes
    sha256: str
    md5: str


@dataclass(slots=True)
class Fleet:
    tenants: list[tuple[str, str]]  # (tenant id, bucket)
    devices: list[Device]
    content: Content
    enroll_seconds: float = 0.0
    objects: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def content() -> Content:
    data = secrets.token_bytes(SEGMENT_BYTES)
    return Content(
        data,
        base64.b64encode(hashlib.sha256(data).digest()).decode(),
        base64.b64encode(hashlib.md5(data).digest()).decode(),  # noqa: S324 (S3's Content-MD5)
    )


def _settings(broker: BrokerProcess) -> Settings:
    return Settings.from_env({**broker.env, "BUCKETREEL_MIGRATE_ON_START": "0"})


async def _tenant(ctx: admin.AdminContext, s3: S3Endpoint, name: str) -> tuple[str, str]:
    tenant_id: str = (await admin.create_tenant(ctx, name=name))["tenant_id"]
    bucket = await asyncio.to_thread(s3.create_bucket)
    await admin.set_storage(
        ctx, tenant=tenant_id, bucket=bucket, region=s3.region, endpoint_url=s3.url,
        prefix=PREFIX, access_key_id=s3.access_key_id, secret_access_key=s3.secret_access_key,
        accept_risk=True,  # moto without IAM lets any key list and delete: the self-check says so
    )
    return tenant_id, bucket


async def _enroll_tenant(
    ctx: admin.AdminContext, signer: TokenSigner, tenant_id: str, count: int, now: datetime
) -> list[Device]:
    settings = ctx.settings
    password_hash = ctx.passwords.hash_unchecked(secrets.token_urlsafe(16))
    started = now - RECORDING_AGE
    made: list[Device] = []
    rows: dict[str, list[dict[str, Any]]] = {"users": [], "devices": [], "tokens": [], "recs": []}
    for _ in range(count):
        user_id, device_id, recording_id = (str(uuid.uuid4()) for _ in range(3))
        key = Ed25519PrivateKey.generate()
        refresh = new_token("brd_", 32)
        rows["users"].append({
            "id": user_id, "tenant_id": tenant_id, "email": f"{user_id}@bench.test",
            "role": "employee", "password_hash": password_hash, "session_version": 1,
            "created_at": now,
        })
        rows["devices"].append({
            "id": device_id, "tenant_id": tenant_id, "user_id": user_id,
            "name": "bench workstation", "created_at": now,
            "public_key": encode_public_key(key.public_key()),
        })
        rows["tokens"].append({
            "id": str(uuid.uuid4()), "tenant_id": tenant_id, "device_id": device_id,
            "family_id": str(uuid.uuid4()),
            "token_hash": token_hash(settings.hmac_key, REFRESH_PURPOSE, refresh),
            "created_at": now, "expires_at": now + timedelta(days=30),
        })
        rows["recs"].append({
            "id": recording_id, "tenant_id": tenant_id, "user_id": user_id,
            "device_id": device_id, "state": "recording", "started_at": started,
            "created_at": started,
        })
        principal = Principal(
            kind="device", subject=device_id, tenant_id=tenant_id, user_id=user_id, role="device"
        )
        made.append(Device(
            tenant_id, user_id, device_id, recording_id, key, signer.issue(principal), refresh,
            started,
        ))
    for table, name in ((users, "users"), (devices, "devices"),
                        (device_refresh_tokens, "tokens"), (recordings, "recs")):
        for at in range(0, count, CHUNK):
            async for txn in ctx.db.attempts():
                async with txn as conn:
                    scope = TenantScope(conn, tenant_id)
                    await scope.execute(text("SELECT 1"))  # declares the tenant (RLS)
                    await conn.execute(insert(table), rows[name][at : at + CHUNK])
    return made


async def _build(broker: BrokerProcess, s3: S3Endpoint, n_devices: int, n_tenants: int) -> Fleet:
    settings = _settings(broker)
    async with admin.context(settings) as ctx:
        signer = TokenSigner(
            current=settings.secret_key, previous=None, ttl=settings.access_token_ttl,
            clock=lambda: datetime.now(UTC),
        )
        tenants = [
            await _tenant(ctx, s3, f"bench-{i}-{secrets.token_hex(3)}") for i in range(n_tenants)
        ]
        now = datetime.now(UTC)
        made: list[Device] = []
        for i, (tenant_id, _) in enumerate(tenants):
            share = n_devices // n_tenants + (1 if i < n_devices % n_tenants else 0)
            made.extend(await _enroll_tenant(ctx, signer, tenant_id, share, now))
    # interleave the tenants, so a round-robin over devices visits every tenant in turn
    order = sorted(range(len(made)), key=lambda i: (i % max(1, n_devices // n_tenants), i))
    return Fleet(tenants, [made[i] for i in order], content())


def build(broker: BrokerProcess, s3: S3Endpoint, n_devices: int, n_tenants: int) -> Fleet:
    """Tenants with storage on `s3`, and `n_devices` enrolled devices spread over them."""
    return asyncio.run(_build(broker, s3, n_devices, n_tenants))


def object_key(device: Device, seq: int) -> str:
    return segment_key(PREFIX, device.tenant_id, device.user_id, device.recording_id, seq)


def upload_objects(fleet: Fleet, s3: S3Endpoint, grants: int, threads: int = 8) -> int:
    """Put the objects of the first `grants` upload grants (devices in turn, seq 0, then 1…)
    into the bucket, as the agent's PUT would; returns how many."""
    buckets = dict(fleet.tenants)
    keys: list[tuple[str, str]] = []
    n = len(fleet.devices)
    for i in range(grants):
        device = fleet.devices[i % n]
        keys.append((buckets[device.tenant_id], object_key(device, i // n)))
    body = fleet.content
    local = threading.local()

    def put(item: tuple[str, str]) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = s3.client()
        client.put_object(
            Bucket=item[0], Key=item[1], Body=body.data, ContentMD5=body.md5,
            ChecksumSHA256=body.sha256, ContentType=SEGMENT_CONTENT_TYPE,
        )

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, keys))
    fleet.objects = len(keys)
    return len(keys)
