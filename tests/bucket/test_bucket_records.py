"""What the broker writes to the bucket on its own (issue 18), against the real broker
(SQLite and PostgreSQL) and moto over HTTP: each segment carries its signed custody record as
metadata; device records, the broker's key, manifests and audit anchors appear, verify with
`shared.bucket` alone and cannot be written twice; the outbox keeps what the bucket could not
take while unreachable and delivers it once it is back."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from broker import admin
from broker.bucket.flusher import KEEP
from broker.clock import utcnow
from broker.db.database import Database
from broker.db.schema import audit_log, bucket_outbox
from broker.sealing import ChainKeys
from broker.services import build_services
from shared import auditchain
from shared.bucket import keys as bucket_keys
from shared.bucket.metadata import SegmentMetadata
from shared.bucket.records import (
    AuditAnchor,
    BrokerKey,
    DeviceRecord,
    Manifest,
    check_key_record,
    decode,
    verify,
)
from shared.custody import GENESIS, V2, CustodyRecord, encode_public_key, sign
from tests.support.api import (
    Api,
    Operator,
    Segment,
    Tenant,
    make_tenant,
    put_with_grant,
    random_segment,
    start_recording,
)
from tests.support.broker import BrokerProcess
from tests.support.custody import Signer, enroll_signer, record
from tests.support.cuttable import cuttable_relay
from tests.support.s3 import S3Endpoint

T = TypeVar("T")
WAIT = 30.0  # the flusher polls every 5 s; retries start at 2 s


@pytest.fixture
def signer(api: Api, broker: BrokerProcess, tenant: Tenant) -> Signer:
    return enroll_signer(api, broker, tenant, "bucket workstation")


def declare(recording_id: str, seq: int, segment: Segment, prev: str, key: Ed25519PrivateKey
            ) -> tuple[dict[str, Any], CustodyRecord]:
    declared = segment.declaration(duration_ms=1000 + seq)
    signed = record(recording_id, seq, segment, declared, prev, V2)
    declared["custody"] = {"prev": prev, "signature": sign(key, signed)}
    return declared, signed


def grant(api: Api, signer: Signer, recording_id: str, seq: int, declared: dict[str, Any]
          ) -> dict[str, Any]:
    reply = api.call("POST", f"/api/v1/recordings/{recording_id}/segments/{seq}/upload",
                     declared, token=signer.device.access_token)
    assert reply.status == 200, reply.body
    body: dict[str, Any] = reply.body
    return body


def complete(api: Api, signer: Signer, recording_id: str, seq: int) -> None:
    reply = api.call("POST", f"/api/v1/recordings/{recording_id}/segments/{seq}/complete",
                     token=signer.device.access_token)
    assert reply.status == 200, reply.body


def finish(api: Api, signer: Signer, recording_id: str) -> None:
    reply = api.call("POST", f"/api/v1/recordings/{recording_id}/finish",
                     token=signer.device.access_token)
    assert reply.status == 200, reply.body


def upload(api: Api, signer: Signer, recording_id: str, seq: int, prev: str
           ) -> tuple[dict[str, Any], CustodyRecord]:
    segment = random_segment(4096)
    declared, record = declare(recording_id, seq, segment, prev, signer.key)
    body = grant(api, signer, recording_id, seq, declared)
    assert put_with_grant(body, segment.data).status == 200
    complete(api, signer, recording_id, seq)
    return body, record


def read(s3: S3Endpoint, tenant: Tenant, key: str) -> bytes | None:
    try:
        body: bytes = s3.client().get_object(Bucket=tenant.bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response["Error"]["Code"] in {"NoSuchKey", "404"}:
            return None
        raise
    return body


def wait_for(s3: S3Endpoint, tenant: Tenant, key: str, timeout: float = WAIT) -> bytes:
    give_up = time.monotonic() + timeout
    while True:
        found = read(s3, tenant, key)
        if found is not None:
            return found
        if time.monotonic() > give_up:
            raise AssertionError(f"the broker wrote no {key} within {timeout:g} s")
        time.sleep(0.25)


def broker_keys(s3: S3Endpoint, tenant: Tenant, key_id: str) -> dict[str, str]:
    """The trusted keys as the customer finds them: the record that names `key_id`, checked."""
    raw = wait_for(s3, tenant, bucket_keys.broker_key_key(tenant.prefix, key_id))
    key = decode(raw, BrokerKey)
    assert check_key_record(key)
    return {key.key_id: key.public_key}


def second_write_refused(s3: S3Endpoint, tenant: Tenant, key: str) -> None:
    with pytest.raises(ClientError) as refused:
        s3.client().put_object(Bucket=tenant.bucket, Key=key, Body=b"{}", IfNoneMatch="*")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412


def test_an_uploaded_segment_carries_its_record_signed_by_the_device(
    api: Api, signer: Signer, s3_endpoint: S3Endpoint, tenant: Tenant
) -> None:
    recording_id = start_recording(api, signer.device)
    body, record = upload(api, signer, recording_id, 0, GENESIS)
    assert body["headers"]["x-amz-meta-signature"] == sign(signer.key, record)
    key = urlsplit(body["url"]).path.split("/", 2)[2]
    head = s3_endpoint.client().head_object(Bucket=tenant.bucket, Key=key)
    meta = SegmentMetadata.from_metadata(head["Metadata"])
    assert (meta.tenant_id, meta.user_id, meta.device_id, meta.recording_id, meta.seq) == (
        tenant.tenant_id, signer.device.user_id, signer.device.device_id, recording_id, 0,
    )
    assert (meta.custody, meta.prev, meta.size) == ("v2", GENESIS, record.size)
    assert meta.record() == record
    assert meta.verify(signer.public_key)
    assert not meta.verify(encode_public_key(Ed25519PrivateKey.generate().public_key()))


def test_the_device_record_and_the_broker_key_appear_once(
    signer: Signer, s3_endpoint: S3Endpoint, tenant: Tenant
) -> None:
    key = bucket_keys.device_key(tenant.prefix, signer.device.device_id)
    device = decode(wait_for(s3_endpoint, tenant, key), DeviceRecord)
    assert (device.tenant_id, device.device_id, device.user_id, device.public_key) == (
        tenant.tenant_id, signer.device.device_id, signer.device.user_id, signer.public_key,
    )
    assert device.user_email.endswith("@example.test")
    assert device.device_name == "bucket workstation"
    assert verify(device, broker_keys(s3_endpoint, tenant, device.key_id))
    second_write_refused(s3_endpoint, tenant, key)
    key_record = bucket_keys.broker_key_key(tenant.prefix, device.key_id)
    second_write_refused(s3_endpoint, tenant, key_record)


def test_a_finished_recording_gets_a_signed_manifest_once_its_segments_are_in(
    api: Api, signer: Signer, s3_endpoint: S3Endpoint, tenant: Tenant
) -> None:
    recording_id = start_recording(api, signer.device)
    first, record0 = upload(api, signer, recording_id, 0, GENESIS)
    # seq 1 is granted but not uploaded yet when the recording finishes
    segment = random_segment(4096)
    declared, record1 = declare(recording_id, 1, segment, record0.digest(), signer.key)
    late = grant(api, signer, recording_id, 1, declared)
    finish(api, signer, recording_id)
    key = bucket_keys.manifest_key(tenant.prefix, tenant.tenant_id, signer.device.user_id,
                                   recording_id)
    time.sleep(8)  # more than a poll and the first retries: the manifest waits
    assert read(s3_endpoint, tenant, key) is None
    assert put_with_grant(late, segment.data).status == 200
    complete(api, signer, recording_id, 1)

    manifest = decode(wait_for(s3_endpoint, tenant, key, timeout=60), Manifest)
    assert verify(manifest, broker_keys(s3_endpoint, tenant, manifest.key_id))
    assert (manifest.recording_id, manifest.device_id, manifest.ended) == (
        recording_id, signer.device.device_id, "finished",
    )
    assert [(s.seq, s.verified, s.record_hash) for s in manifest.segments] == [
        (0, True, record0.digest()), (1, True, record1.digest()),
    ]
    assert manifest.segments[0].key == urlsplit(first["url"]).path.split("/", 2)[2]
    assert manifest.chain_head == record1.digest()
    assert manifest.gaps == ()
    second_write_refused(s3_endpoint, tenant, key)


def test_a_view_url_is_followed_by_an_anchor_of_the_audit_chain(
    api: Api, broker: BrokerProcess, signer: Signer, s3_endpoint: S3Endpoint, tenant: Tenant
) -> None:
    recording_id = start_recording(api, signer.device)
    upload(api, signer, recording_id, 0, GENESIS)
    Operator(broker).run(admin.view_url, tenant=tenant.tenant_id, recording=recording_id, seq=0)
    entry = on_database(broker, lambda db: last_entry(db, tenant.tenant_id, "segment.view_url"))
    key = bucket_keys.anchor_key(tenant.prefix, tenant.tenant_id, entry.seq)
    anchor = decode(wait_for(s3_endpoint, tenant, key), AuditAnchor)
    assert verify(anchor, broker_keys(s3_endpoint, tenant, anchor.key_id))
    assert (anchor.seq, anchor.hash, anchor.mac, anchor.at) == (
        entry.seq, entry.hash, entry.mac, entry.at.isoformat(),
    )
    # the customer recomputes the hash from the export's line, which names everything it covers
    line = {
        "tenant_id": tenant.tenant_id, "seq": entry.seq, "at": anchor.at, "actor": entry.actor,
        "action": entry.action, "target": entry.target, "details": json.loads(entry.details),
        "prev_hash": entry.prev_hash,
    }
    assert auditchain.export_hash(line) == anchor.hash
    second_write_refused(s3_endpoint, tenant, key)


def test_the_periodic_round_anchors_a_grown_chain(
    broker: BrokerProcess, signer: Signer, s3_endpoint: S3Endpoint, tenant: Tenant
) -> None:
    """The flusher's ten-minute round, run here at once: the head after the enrollment is
    anchored (the broker's own flusher may race it: both write the same bytes, once)."""
    head = on_database(broker, lambda db: last_entry(db, tenant.tenant_id, None))

    async def round_(db: Database) -> int:
        services = build_services(Operator(broker).settings, db, utcnow)
        await services.bucket.anchor_round()
        return await services.bucket.deliver_due()

    on_database(broker, round_)
    key = bucket_keys.anchor_key(tenant.prefix, tenant.tenant_id, head.seq)
    anchor = decode(wait_for(s3_endpoint, tenant, key), AuditAnchor)
    assert anchor.hash == head.hash


def test_the_outbox_keeps_records_while_the_bucket_is_unreachable(
    api: Api, broker: BrokerProcess, s3_endpoint: S3Endpoint
) -> None:
    port = urlsplit(s3_endpoint.url).port
    assert port is not None
    with cuttable_relay("127.0.0.1", port) as relay:
        through = S3Endpoint(relay.url, s3_endpoint.region, s3_endpoint.access_key_id,
                             s3_endpoint.secret_access_key)
        tenant = make_tenant(broker, through, prefix="cut")
        relay.cut()
        signer = enroll_signer(api, broker, tenant, "bucket workstation")
        key = bucket_keys.device_key(tenant.prefix, signer.device.device_id)

        def attempted(db: Database) -> Any:
            return outbox_row(db, tenant.tenant_id, signer.device.device_id)

        give_up = time.monotonic() + WAIT
        while (row := on_database(broker, attempted)) is None or row.attempts < 2:
            assert time.monotonic() < give_up, "the flusher never tried the unreachable bucket"
            time.sleep(0.5)
        assert row.delivered_at is None
        assert row.last_error
        assert read(s3_endpoint, tenant, key) is None
        relay.restore()
        device = decode(wait_for(s3_endpoint, tenant, key, timeout=60), DeviceRecord)
        assert device.device_id == signer.device.device_id
        delivered = on_database(broker, attempted)
        assert delivered.delivered_at is not None


def on_database(broker: BrokerProcess, use: Callable[[Database], Any]) -> Any:
    async def go() -> Any:
        settings = Operator(broker).settings
        db = Database.from_url(broker.database_url,
                               audit_keys=ChainKeys.from_master(settings.master_keys))
        try:
            return await use(db)
        finally:
            await db.close()

    return asyncio.run(go())


async def last_entry(db: Database, tenant_id: str, action: str | None) -> Any:
    query = select(audit_log).where(audit_log.c.tenant_id == tenant_id)
    if action is not None:
        query = query.where(audit_log.c.action == action)
    async with db.transaction() as conn:
        return (await conn.execute(query.order_by(audit_log.c.seq.desc()).limit(1))).one()


async def outbox_row(db: Database, tenant_id: str, ref: str) -> Any:
    async with db.transaction() as conn:
        return (await conn.execute(select(bucket_outbox).where(
            bucket_outbox.c.tenant_id == tenant_id, bucket_outbox.c.ref == ref
        ))).first()


def test_delivered_rows_are_pruned_and_a_record_queued_again_is_found_written(
    broker: BrokerProcess, signer: Signer, s3_endpoint: S3Endpoint, tenant: Tenant
) -> None:
    """After `KEEP` the outbox forgets delivered rows (the bucket keeps the records); the
    next anchor round queues the head again, and the bucket's 412 counts as delivered."""
    head = on_database(broker, lambda db: last_entry(db, tenant.tenant_id, None))
    key = bucket_keys.anchor_key(tenant.prefix, tenant.tenant_id, head.seq)

    async def anchored(db: Database) -> Any:
        services = build_services(Operator(broker).settings, db, utcnow)
        await services.bucket.anchor_round()
        # after the prune every tenant of this session's database is anchored anew, and a
        # round delivers at most BATCH rows: deliver until this tenant's row is, or none is
        while (row := await outbox_row(db, tenant.tenant_id, str(head.seq))) is None or (
            row.delivered_at is None
        ):
            if not await services.bucket.deliver_due():
                break
        return row

    first = on_database(broker, anchored)
    assert first.delivered_at is not None
    written = wait_for(s3_endpoint, tenant, key)

    async def prune(db: Database) -> int:
        services = build_services(Operator(broker).settings, db, utcnow)
        return await services.bucket.prune(utcnow() + KEEP + timedelta(days=1))

    assert on_database(broker, prune) >= 1
    assert on_database(broker, lambda db: outbox_row(db, tenant.tenant_id, str(head.seq))) is None
    again = on_database(broker, anchored)
    assert again.delivered_at is not None
    assert again.id != first.id
    assert read(s3_endpoint, tenant, key) == written  # never overwritten


def test_the_operator_prints_the_signing_key_the_customer_pins(
    broker: BrokerProcess, signer: Signer, s3_endpoint: S3Endpoint, tenant: Tenant
) -> None:
    printed = json.loads(broker.cli("admin", "signing-key"))
    device = decode(wait_for(s3_endpoint, tenant, bucket_keys.device_key(
        tenant.prefix, signer.device.device_id)), DeviceRecord)
    assert printed == {"key_id": device.key_id, "algorithm": "Ed25519",
                       "public_key": broker_keys(s3_endpoint, tenant, device.key_id)[
                           device.key_id]}
    assert verify(device, {printed["key_id"]: printed["public_key"]})
    assert broker.secrets["BUCKETREEL_SIGNING_KEY"] not in json.dumps(printed)
