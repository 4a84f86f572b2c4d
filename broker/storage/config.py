"""A tenant's bucket and the credentials the broker signs with, sealed at rest."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Row, bindparam, select

from broker.audit import log as audit
from broker.db import notify
from broker.db.notify import Note, Topic
from broker.db.schema import storage_access, storage_configs
from broker.db.scope import TenantScope
from broker.errors import BrokerError, InvalidInput
from broker.sealing import Sealed, seal, unseal
from broker.settings import MasterKeys, Secret
from shared.errors import ErrorCode

SEAL_PURPOSE = "storage-secret"
KEYS = "keys"  # static IAM access keys, sealed here
ROLE = "role"  # a role the broker assumes with STS, with the tenant's external ID
_ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION_RE = re.compile(r"^[a-z0-9-]{2,40}$")
# No `*`: IAM reads it as a wildcard in the policy's resource, widening the broker's rights.
_PREFIX_RE = re.compile(r"^[A-Za-z0-9!_.'()/-]{0,200}$")
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
    access_key_id: str | None
    secret_access_key: Secret | None = field(repr=False)
    credential_version: int
    auth_mode: str = KEYS
    role_arn: str | None = None
    external_id: str | None = None


def validate(
    *,
    bucket: str,
    region: str,
    endpoint_url: str | None,
    prefix: str,
    access_key_id: str | None,
    secret_access_key: str | None,
    role_arn: str | None = None,
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
        raise InvalidInput("prefix may hold letters, digits and !_.'()/- only")
    if role_arn is not None:
        if access_key_id is not None or secret_access_key is not None:
            raise InvalidInput("give either a role ARN or an access key, not both")
        if not _ROLE_ARN_RE.match(role_arn):
            raise InvalidInput("role ARN must look like arn:aws:iam::123456789012:role/NAME")
        return
    if access_key_id is None or secret_access_key is None:
        raise InvalidInput("give an access key id and its secret, or a role ARN")
    if not _KEY_ID_RE.match(access_key_id):
        raise InvalidInput("access key id is not of the form S3 uses")
    if not 8 <= len(secret_access_key) <= 256 or any(c.isspace() for c in secret_access_key):
        raise InvalidInput("secret access key must be 8 to 256 characters without spaces")


def candidate(
    tenant_id: str,
    *,
    bucket: str,
    region: str,
    endpoint_url: str | None,
    prefix: str,
    access_key_id: str | None,
    secret_access_key: str | None,
    role_arn: str | None,
    external_id: str | None,
) -> StorageConfig:
    """A validated configuration that is not saved yet (the self-check runs on it first)."""
    prefix = prefix.strip("/")
    validate(
        bucket=bucket, region=region, endpoint_url=endpoint_url, prefix=prefix,
        access_key_id=access_key_id, secret_access_key=secret_access_key, role_arn=role_arn,
    )
    return StorageConfig(
        tenant_id=tenant_id,
        bucket=bucket,
        region=region,
        endpoint_url=endpoint_url,
        prefix=prefix,
        access_key_id=access_key_id,
        secret_access_key=Secret(secret_access_key) if secret_access_key is not None else None,
        credential_version=0,
        auth_mode=ROLE if role_arn else KEYS,
        role_arn=role_arn,
        external_id=external_id if role_arn else None,
    )


async def save(
    scope: TenantScope,
    keys: MasterKeys,
    *,
    bucket: str,
    region: str,
    endpoint_url: str | None,
    prefix: str,
    access_key_id: str | None,
    secret_access_key: str | None,
    now: datetime,
    actor: str,
    role_arn: str | None = None,
    audit_details: dict[str, Any] | None = None,
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
        role_arn=role_arn,
    )
    # Before the first write, and before reading the version it raises (README's lock order).
    await audit.lock_chain(scope)
    existing = await scope.one(storage_configs)
    version = existing.credential_version + 1 if existing else 1
    sealed = (
        seal(
            keys,
            secret_access_key.encode(),
            purpose=SEAL_PURPOSE,
            tenant_id=scope.tenant_id,
            row_ref=f"v{version}",
        )
        if secret_access_key is not None
        else None
    )
    values = {
        "bucket": bucket,
        "region": region,
        "endpoint_url": endpoint_url,
        "prefix": prefix,
        "access_key_id": access_key_id,
        "secret_sealed": sealed.blob if sealed else None,
        "kek_version": sealed.kek_version if sealed else None,
        "credential_version": version,
        "updated_at": now,
        "auth_mode": ROLE if role_arn else KEYS,
        "role_arn": role_arn,
    }
    if existing:
        await scope.update(storage_configs, **values)
    else:
        await scope.insert(storage_configs, **values)
    await notify.publish(scope.conn, Note(Topic.STORAGE, scope.tenant_id))
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
            "auth_mode": ROLE if role_arn else KEYS,
            "role_arn": role_arn,
            "credential_version": version,
            **(audit_details or {}),
        },
    )
    return version


_ROW = select(storage_configs).where(storage_configs.c.tenant_id == bindparam("tenant"))
_COLUMNS = {column.name: index for index, column in enumerate(storage_configs.c)}


class ConfigRow(tuple[Any, ...]):
    """A `storage_configs` row's values in the table's column order, also by column name:
    the row as another statement read it (`broker.recordings.common` reads it with the
    device, in the same transaction). Equal to the `Row` that `load` reads for it."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[_COLUMNS[name]]
        except KeyError:
            raise AttributeError(name) from None


class ConfigCache:
    """Unsealed configurations by tenant, each valid for exactly the row it was made from.

    The row is still read in every transaction that needs the configuration (one indexed
    read of a small row, or its columns in a read the request makes anyway); only the
    unsealing (HKDF and AES-GCM) and the external ID's read are skipped while the row is
    unchanged. A new credential version, a re-sealed secret or any other change to the row
    is a different row: the next transaction unseals it, so a rotation or revocation is in
    force from the transaction that commits it."""

    def __init__(self) -> None:
        self._by_tenant: dict[str, tuple[tuple[Any, ...], StorageConfig]] = {}

    def get(self, tenant_id: str, row: Row[Any] | ConfigRow) -> StorageConfig | None:
        found = self._by_tenant.get(tenant_id)
        return found[1] if found is not None and found[0] == tuple(row) else None

    def put(self, row: Row[Any] | ConfigRow, config: StorageConfig) -> None:
        self._by_tenant[config.tenant_id] = (tuple(row), config)


async def load(
    scope: TenantScope, keys: MasterKeys, cache: ConfigCache | None = None
) -> StorageConfig:
    row = (await scope.execute(_ROW, {"tenant": scope.tenant_id})).first()
    return await resolve(scope, keys, row, cache)


def remembered(
    tenant_id: str, row: ConfigRow | None, cache: ConfigCache
) -> StorageConfig | None:
    """The configuration of `row` (the tenant's row, read in this request's transaction)
    when `cache` holds it unsealed already, so no statement is needed to make it; None
    when it must be made (`resolve`, in a transaction: the first time, or an assumed role).
    Raises `StorageNotConfigured` when there is no row, as `resolve` does."""
    return cache.get(tenant_id, _present(tenant_id, row))


def _present(tenant_id: str, row: Row[Any] | ConfigRow | None) -> Row[Any] | ConfigRow:
    """`row`, the tenant's own; `StorageNotConfigured` when there is none."""
    if row is None:
        raise StorageNotConfigured("no bucket is configured for this tenant")
    if row.tenant_id != tenant_id:
        raise ValueError("a storage configuration row of another tenant")
    return row


async def resolve(
    scope: TenantScope,
    keys: MasterKeys,
    row: Row[Any] | ConfigRow | None,
    cache: ConfigCache | None = None,
) -> StorageConfig:
    """The configuration of `row`, the tenant's `storage_configs` row read in this
    transaction (None: the tenant has none, and this raises `StorageNotConfigured`)."""
    row = _present(scope.tenant_id, row)
    if cache is not None and row.auth_mode != ROLE:
        cached = cache.get(scope.tenant_id, row)
        if cached is not None:
            return cached
    config = await _unsealed(scope, keys, row)
    if cache is not None and row.auth_mode != ROLE:  # a role's external ID is another row
        cache.put(row, config)
    return config


async def _unsealed(
    scope: TenantScope, keys: MasterKeys, row: Row[Any] | ConfigRow
) -> StorageConfig:
    secret = None
    if row.secret_sealed is not None:
        secret = unseal(
            keys,
            Sealed(row.kek_version, row.secret_sealed),
            purpose=SEAL_PURPOSE,
            tenant_id=scope.tenant_id,
            row_ref=f"v{row.credential_version}",
        )
    external_id = None
    if row.auth_mode == ROLE:
        access = await scope.one(storage_access)
        external_id = access.external_id if access else None
    return StorageConfig(
        tenant_id=scope.tenant_id,
        bucket=row.bucket,
        region=row.region,
        endpoint_url=row.endpoint_url,
        prefix=row.prefix,
        access_key_id=row.access_key_id,
        secret_access_key=Secret(secret.decode()) if secret is not None else None,
        credential_version=row.credential_version,
        auth_mode=row.auth_mode,
        role_arn=row.role_arn,
        external_id=external_id,
    )
