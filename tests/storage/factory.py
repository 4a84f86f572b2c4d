"""Tenants whose storage is the strict S3 gate, each with its own broker access key."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from broker import admin
from tests.support.api import Operator, Tenant
from tests.support.broker import BrokerProcess
from tests.support.s3gate import AccessKey, S3Gate

BROKER_KEY_LABEL = "broker"
# All the broker's credentials may do or authorise (DESIGN G1–G3).
BROKER_OPERATIONS = frozenset({"PutObject", "GetObject", "HeadObject"})


@dataclass(frozen=True)
class GateTenant(Tenant):
    key: AccessKey  # the access key the broker signs with for this tenant


def make_gate_tenant(
    broker: BrokerProcess, gate: S3Gate, setup_key: AccessKey, *, prefix: str = "rec"
) -> GateTenant:
    """A tenant, a bucket made with the set-up key, and a fresh broker key in the gate."""
    name = f"tenant-{secrets.token_hex(4)}"
    operator = Operator(broker)
    tenant_id = operator.run(admin.create_tenant, name=name)["tenant_id"]
    bucket = gate.endpoint(setup_key).create_bucket()
    key = gate.keys.add(label=BROKER_KEY_LABEL)
    operator.run(
        admin.set_storage, tenant=tenant_id, bucket=bucket, region=gate.region,
        endpoint_url=gate.url, prefix=prefix, access_key_id=key.key_id,
        secret_access_key=key.secret,
    )
    return GateTenant(tenant_id, name, bucket, prefix, key)
