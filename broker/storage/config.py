"""A tenant's bucket and the credentials the broker signs with, sealed at rest."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from broker.audit import log as audit
from broker.db.schema import storage_configs
from broker.db.scope import TenantScope
from broker.errors import BrokerError, InvalidInput
from broker.sealing import Sealed, seal, unseal
from broker.settings import MasterKeys, Secret
from shared.errors import ErrorCode

SEAL_PURPOSE = "storage-secret"
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION_RE = re.compile(r"^[a-z0-9-]{2,40}$")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9!_.*'()/-]{0,200}$")
_KEY_ID_RE = re.compile(r"^[A-Za-z0-9+/=_-]{3,128}$")


class StorageNotConfigured(BrokerError):
    status = 409
    code = ErrorCode.STORAGE_NOT_CONFIGURED


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageConfig:
    tenant_id: str
    bucket: str
    region: str
    endpoint_url: str | None
    prefix: str
    access_key_id: str
    secret_access_key: Secret = field(repr=False)
    credential_version: int


def validate(
    *,
    bucket: str,
    region: str,
    endpoint_url: str | None,
    prefix: str,
    access_key_id: str,
    secret_access_key: str,
) -> None:
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise InvalidInput(f"{bucket!r} is not a valid S3 bucket name")
    if not _REGION_RE.match(region):
        raise InvalidInput(f"{region!r} is not a valid region name")
    if endpoint_url is not None:
        parts = urlsplit(endpoint_url)
        if parts.scheme not in {"https", "http"} or not parts.hostname or parts.query:
            raise InvalidInput("endpoint URL must be an http(s) URL without a query")
    if not _PREFIX_RE.match(prefix) or ".." in prefix.split("/"):
        raise InvalidInput("prefix may hold letters, digits and !_.*'()/- only")
    if not _KEY_ID_RE.match(access_key_id):
        raise InvalidInput("access key id is not of the form S3 uses")
    if not 8 <= len(secret_access_key) <= 256 or any(c.isspace() for c in secret_access_key):
        raise InvalidInput("secret access key must be 8 to 256 characters without spaces")


async def save(
    scope: TenantScope,
    keys: MasterKeys,
    *,
    bucket: str,
    region: str,
    endpoint_url: str | None,
    prefix: str,
    access_key_id: str,
    secret_access_key: str,
    now: datetime,
    actor: str,
) -> int:
    """Store (or replace) the tenant's storage; returns the new credential version."""
    prefix = prefix.strip("/")
    validate(
        bucket=bucket,
        region=region,
        endpoint_url=endpoint_url,
        prefix=prefix,
        access_key_id=access_key_id,
        secret_access_key=secret_access_key,
    )
    existing = await scope.one(storage_configs)
    version = existing.credential_version + 1 if existing else 1
    sealed = seal(
        keys,
        secret_access_key.encode(),
        purpose=SEAL_PURPOSE,
        tenant_id=scope.tenant_id,
        row_ref=f"v{version}",
    )
    values = {
        "bucket": bucket,
        "region": region,
        "endpoint_url": endpoint_url,
        "prefix": prefix,
        "access_key_id": access_key_id,
        "secret_sealed": sealed.blob,
        "kek_version": sealed.kek_version,
        "credential_version": version,
        "updated_at": now,
    }
    if existing:
        await scope.update(storage_configs, **values)
    else:
        await scope.insert(storage_configs, **values)
    await audit.record(
        scope,
        at=now,
        actor=actor,
        action="storage.set",
        target=bucket,
        details={
            "region": region,
            "endpoint_url": endpoint_url,
            "prefix": prefix,
            "access_key_id": access_key_id,
            "credential_version": version,
        },
    )
    return version


async def load(scope: TenantScope, keys: MasterKeys) -> StorageConfig:
    row = await scope.one(storage_configs)
    if row is None:
        raise StorageNotConfigured("no bucket is configured for this tenant")
    secret = unseal(
        keys,
        Sealed(row.kek_version, row.secret_sealed),
        purpose=SEAL_PURPOSE,
        tenant_id=scope.tenant_id,
        row_ref=f"v{row.credential_version}",
    )
    return StorageConfig(
        tenant_id=scope.tenant_id,
        bucket=row.bucket,
        region=row.region,
        endpoint_url=row.endpoint_url,
        prefix=row.prefix,
        access_key_id=row.access_key_id,
        secret_access_key=Secret(secret.decode()),
        credential_version=row.credential_version,
    )
