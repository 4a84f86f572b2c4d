"""Tenants whose storage is the strict S3 gate, each with its own broker access key, and what
a broker key may do there."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

from broker import admin
from tests.support.api import Operator, Tenant
from tests.support.broker import BrokerProcess
from tests.support.s3gate import AccessKey, Operation, S3Gate

BROKER_KEY_LABEL = "broker"
# All the broker's credentials may do or authorise (DESIGN G1–G3).
BROKER_OPERATIONS = frozenset({"PutObject", "GetObject", "HeadObject"})
# ...plus, from the storage self-check only (broker/storage/selfcheck.py), these probes, each
# under `[<prefix>/]_bucketreel/selfcheck/` and each meant to be refused by a right policy.
PROBE_OPERATIONS = frozenset({"ListObjectsV2", "DeleteObject", "PutObjectAcl"})
_SELFCHECK_KEY = re.compile(r"^/[^/]+/(?:.+/)?_bucketreel/selfcheck/[A-Za-z0-9-]+$")
_SELFCHECK_PREFIX = re.compile(r"^(?:.+/)?_bucketreel/selfcheck/$")


def is_selfcheck_probe(entry: Operation) -> bool:
    """A list, delete or ACL request exactly as the self-check sends it, and nothing wider."""
    path = unquote(entry.path)
    if entry.name == "ListObjectsV2":
        query = dict(parse_qsl(entry.query))
        return (
            path.strip("/").count("/") == 0
            and bool(_SELFCHECK_PREFIX.match(query.get("prefix", "")))
            and query.get("max-keys") == "1"
        )
    if entry.name in {"DeleteObject", "PutObjectAcl"}:
        return bool(_SELFCHECK_KEY.match(path))
    return False


def broker_may(entry: Operation) -> bool:
    return entry.name in BROKER_OPERATIONS or is_selfcheck_probe(entry)


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
        accept_risk=True,  # moto behind the gate enforces no IAM policy: findings are expected
    )
    return GateTenant(tenant_id, name, bucket, prefix, key)
