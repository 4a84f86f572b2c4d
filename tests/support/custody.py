"""Devices that sign their segments (chain of custody), for the API tests."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.custody import V1, V2, CustodyRecord, encode_public_key, timestamp_ms
from shared.wire import parse_timestamp
from tests.support.api import Api, Device, Segment, Tenant, enrollment_code, make_user
from tests.support.broker import BrokerProcess


@dataclass
class Signer:
    device: Device
    key: Ed25519PrivateKey

    @property
    def public_key(self) -> str:
        return encode_public_key(self.key.public_key())


def enroll_signer(api: Api, broker: BrokerProcess, tenant: Tenant, name: str) -> Signer:
    """A new person's device, enrolled by code with a fresh custody key."""
    key = Ed25519PrivateKey.generate()
    user_id = make_user(broker, tenant)
    reply = api.call("POST", "/api/v1/devices/enroll", {
        "code": enrollment_code(broker, tenant, user_id), "name": name,
        "public_key": encode_public_key(key.public_key()),
    })
    assert reply.status == 201, reply.body
    body = reply.body
    return Signer(Device(tenant, user_id, body["device_id"], body["access_token"],
                         body["refresh_token"]), key)


def record(recording_id: str, seq: int, segment: Segment, declared: dict[str, Any], prev: str,
           version: int) -> CustodyRecord:
    """The record a device signs for `segment` as `declared` (v1: no times)."""
    sha = base64.b64encode(hashlib.sha256(segment.data).digest()).decode()
    if version == V1:
        return CustodyRecord(recording_id=recording_id, seq=seq, size=len(segment.data),
                             sha256=sha, prev=prev)
    return CustodyRecord(
        recording_id=recording_id, seq=seq, size=len(segment.data), sha256=sha, prev=prev,
        version=V2, started_at_ms=timestamp_ms(parse_timestamp(declared["started_at"])),
        duration_ms=declared["duration_ms"],
    )
