"""The broker's HeadObject (completion, custody check, storage watch): signed by the tenant's
botocore client, sent on the event loop with aiohttp (`broker.storage.http`), through the
strict S3 gate (tests/support/s3gate.py) in front of moto.

It asks for the stored checksum (a signed `x-amz-checksum-mode: ENABLED`), reads size, ETag
and SSE as botocore did, answers None for a missing object, raises StorageAccessDenied on 403
(a deactivated key), holds one of the tenant's storage slots, and is bounded when the bucket
accepts and never answers.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import time

import pytest

from broker.errors import StorageUnavailable
from broker.storage.config import StorageConfig, candidate
from broker.storage.credentials import StorageAccessDenied
from broker.storage.endpoint import EndpointPolicy
from broker.storage.io import StorageBusy, StorageIO
from broker.storage.s3 import HEAD_DEADLINE, BucketClient, BucketClients, ObjectHead
from tests.storage.factory import BROKER_KEY_LABEL
from tests.support.s3gate import AccessKey, S3Gate
from tests.support.tarpit import Tarpit

DEV = EndpointPolicy(dev_mode=True)  # the gate listens on the loopback, over http


def _config(
    gate: S3Gate, key: AccessKey, bucket: str, endpoint: str | None = None
) -> StorageConfig:
    return candidate(
        f"t-head-{secrets.token_hex(3)}", bucket=bucket, region=gate.region,
        endpoint_url=endpoint or gate.url, prefix="rec", access_key_id=key.key_id,
        secret_access_key=key.secret, role_arn=None, external_id=None,
    )


def _put(gate: S3Gate, setup_key: AccessKey, bucket: str, key: str, body: bytes) -> str:
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")
    gate.client(setup_key).put_object(
        Bucket=bucket, Key=key, Body=body, ChecksumAlgorithm="SHA256", ChecksumSHA256=digest,
        ServerSideEncryption="AES256",
    )
    return digest


def test_head_reads_size_checksum_etag_and_sse_and_none_when_missing(
    s3_gate: S3Gate, setup_key: AccessKey
) -> None:
    bucket = s3_gate.endpoint(setup_key).create_bucket()
    body = secrets.token_bytes(2048)
    digest = _put(s3_gate, setup_key, bucket, "rec/a/000000.mp4", body)
    broker_key = s3_gate.keys.add(label=BROKER_KEY_LABEL)
    client = BucketClient(_config(s3_gate, broker_key, bucket), policy=DEV)
    buckets = BucketClients(policy=DEV)

    async def scenario() -> tuple[ObjectHead | None, ObjectHead | None, ObjectHead | None]:
        async with buckets.http.opened():  # the app's shared session, kept alive
            found = await buckets.head(client, "rec/a/000000.mp4")
            again = await buckets.head(client, "rec/a/000000.mp4")
            missing = await buckets.head(client, "rec/a/000001.mp4")
        return found, again, missing

    found, again, missing = asyncio.run(scenario())
    assert found == again
    assert found is not None
    assert missing is None
    assert (found.size, found.sha256) == (len(body), digest)
    assert found.etag == f'"{hashlib.md5(body, usedforsecurity=False).hexdigest()}"'
    assert found.server_side_encryption == "AES256"
    heads = [e for e in s3_gate.log.entries(broker_key.key_id) if e.name == "HeadObject"]
    assert [e.status for e in heads] == [200, 200, 404]
    assert all(e.signed_ok for e in heads), "the gate verified each header signature"
    assert all(e.error is None for e in heads)
    _, headers = client.sign_head("rec/a/000000.mp4")
    assert headers["x-amz-checksum-mode"] == "ENABLED"
    assert "x-amz-checksum-mode" in headers["Authorization"], "asked for under the signature"
    buckets.io.close()


def test_head_with_a_deactivated_key_is_access_denied(
    s3_gate: S3Gate, setup_key: AccessKey
) -> None:
    bucket = s3_gate.endpoint(setup_key).create_bucket()
    _put(s3_gate, setup_key, bucket, "rec/b/000000.mp4", b"segment")
    broker_key = s3_gate.keys.add(label=BROKER_KEY_LABEL)
    client = BucketClient(_config(s3_gate, broker_key, bucket), policy=DEV)
    buckets = BucketClients(policy=DEV)
    assert asyncio.run(buckets.head(client, "rec/b/000000.mp4")) is not None
    s3_gate.keys.deactivate(broker_key.key_id)
    with pytest.raises(StorageAccessDenied, match="HeadObject with HTTP 403"):
        asyncio.run(buckets.head(client, "rec/b/000000.mp4"))
    buckets.io.close()


def test_head_holds_one_of_the_tenants_storage_slots(
    s3_gate: S3Gate, setup_key: AccessKey
) -> None:
    """A tenant whose slots are all taken waits, then gets 429, like a pool call."""
    bucket = s3_gate.endpoint(setup_key).create_bucket()
    client = BucketClient(
        _config(s3_gate, s3_gate.keys.add(label=BROKER_KEY_LABEL), bucket), policy=DEV
    )
    buckets = BucketClients(policy=DEV, io=StorageIO(per_tenant=1))

    async def scenario() -> None:
        async with buckets.io.slot(client.config.tenant_id, deadline=5):
            with pytest.raises(StorageBusy):
                await buckets.head(client, "rec/c/000000.mp4")
        assert await buckets.head(client, "rec/c/000000.mp4") is None  # the slot freed

    asyncio.run(scenario())
    buckets.io.close()


def test_head_against_a_bucket_that_never_answers_is_bounded(
    s3_gate: S3Gate, setup_key: AccessKey
) -> None:
    with Tarpit() as pit:
        config = _config(
            s3_gate, s3_gate.keys.add(label=BROKER_KEY_LABEL), "bucket",
            endpoint=f"http://{pit.url_host}:{pit.port}",
        )
        client = BucketClient(config, policy=DEV)
        buckets = BucketClients(policy=DEV)
        started = time.monotonic()
        with pytest.raises(StorageUnavailable, match="did not answer"):
            asyncio.run(buckets.head(client, "rec/d/000000.mp4"))
        assert time.monotonic() - started <= HEAD_DEADLINE + 1
        assert pit.accepted >= 2, "tried twice, as botocore's standard retries did"
        buckets.io.close()
