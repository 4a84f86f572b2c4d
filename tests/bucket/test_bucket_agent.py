"""The real agent (on Xvfb) against the real broker and moto: what it uploads explains itself.
Each segment object carries the custody record its device signed, verified here with the
device record the broker wrote to the bucket (itself verified with the broker's published
key), the records chain from GENESIS, and the manifest names the chain's head: all read with
boto3 and `shared.bucket` alone, without asking the broker."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from shared.bucket import keys as bucket_keys
from shared.bucket.metadata import SegmentMetadata
from shared.bucket.records import BrokerKey, DeviceRecord, Manifest, check_key_record, decode
from shared.bucket.records import verify as verify_document
from shared.custody import GENESIS
from tests.agent.test_agent_e2e import agent
from tests.support import agentlog
from tests.support.api import enrollment_code, make_tenant, make_user
from tests.support.broker import BrokerProcess
from tests.support.s3 import S3Endpoint


def fetch(client: Any, bucket: str, key: str, timeout: float = 30.0) -> bytes:
    give_up = time.monotonic() + timeout
    while True:
        try:
            body: bytes = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            return body
        except client.exceptions.NoSuchKey:
            if time.monotonic() > give_up:
                raise AssertionError(f"no {key} within {timeout:g} s") from None
            time.sleep(0.25)


@pytest.mark.display
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_agents_segments_verify_from_the_bucket_alone(
    broker: BrokerProcess, s3_endpoint: S3Endpoint, tmp_path: Path
) -> None:
    tenant = make_tenant(broker, s3_endpoint, prefix="own")
    user_id = make_user(broker, tenant)
    enrolled = agent("enroll", "--broker", broker.url, "--code",
                     enrollment_code(broker, tenant, user_id), "--name", "vaulted", home=tmp_path)
    assert enrolled.returncode == 0, enrolled.stderr
    device_id = json.loads((tmp_path / "device.json").read_text())["device_id"]
    done = agent("run", "--fps", "4", "--segment-seconds", "1", "--duration", "2.5",
                 home=tmp_path)
    assert done.returncode == 0, done.stderr + broker.log_tail()
    recording_id = agentlog.events(done.stderr, "recording_started")[0]["recording_id"]

    s3 = s3_endpoint.client()
    device = decode(fetch(s3, tenant.bucket, bucket_keys.device_key("own", device_id)),
                    DeviceRecord)
    key = decode(fetch(s3, tenant.bucket, bucket_keys.broker_key_key("own", device.key_id)),
                 BrokerKey)
    assert check_key_record(key)
    trusted = {key.key_id: key.public_key}
    assert verify_document(device, trusted)
    assert device.public_key is not None
    assert (device.user_id, device.device_name) == (user_id, "vaulted")

    manifest = decode(fetch(s3, tenant.bucket, bucket_keys.manifest_key(
        "own", tenant.tenant_id, user_id, recording_id)), Manifest)
    assert verify_document(manifest, trusted)
    prev = GENESIS
    for listed in manifest.segments:
        head = s3.head_object(Bucket=tenant.bucket, Key=listed.key)
        meta = SegmentMetadata.from_metadata(head["Metadata"])
        assert meta.verify(device.public_key), listed.seq
        assert (meta.seq, meta.prev, meta.custody) == (listed.seq, prev, "v2")
        assert head["ContentLength"] == meta.size
        record = meta.record()
        assert record is not None
        prev = record.digest()
        assert listed.record_hash == prev
    assert [s.seq for s in manifest.segments] == [0, 1, 2]
    assert manifest.chain_head == prev
