"""A tenant's storage access: save (with the self-check), check, status, revocation.

Saving runs the self-check on the new credentials *before* anything is stored. Credentials
that cannot write are refused, always; rights too many (list, delete, ACL) refuse the save
unless the caller accepts the risk, which is audited. The bucket clients are keyed by
configuration, so saved keys or a role take effect on the next request, without a restart.

Revocation (DESIGN G6): when a re-grant (an earlier PUT failed) or a completion meets a 403,
the broker asks the bucket about the tenant's canary, an object the self-check created and
knows to exist. 403 there means the credentials are revoked: the storage is marked
`access_revoked` (audited, logged) until new credentials pass the self-check. The same probe
runs every `storage_check_interval` seconds for every tenant whose access works
(`broker.storage.monitor`), so a key deactivated while no agent uploads shows too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import time
from datetime import datetime
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from broker.audit import log as audit
from broker.clock import Clock
from broker.db.database import Database
from broker.db.schema import storage_access, storage_configs
from broker.db.scope import TenantScope
from broker.errors import BrokerError, Conflict, InvalidInput, RateLimited
from broker.settings import MasterKeys
from broker.storage import config as storage_config
from broker.storage import origins, policy, selfcheck
from broker.storage.config import StorageConfig
from broker.storage.credentials import StorageAccessDenied
from broker.storage.io import StorageTimeout
from broker.storage.s3 import CLIENT_DEADLINE, BucketClient, BucketClients
from shared.bucket.policy import vault_policy
from shared.wire import format_timestamp

log = logging.getLogger(__name__)

OK = "ok"
ACCESS_REVOKED = "access_revoked"
# The whole self-check (its client, AssumeRole, five probes) ends within this; each probe is
# tried once with short timeouts (`broker.storage.s3`), and none starts after it.
SELFCHECK_DEADLINE = 20.0
MAX_ARN = 2048  # IAM's own limit on an ARN


class StorageRisk(Conflict):
    """The self-check failed (nothing saved): the credentials cannot write, or they hold rights
    the broker must not have (saving those needs `accept_risk`). `findings` says which."""

    def __init__(self, message: str, *, findings: list[selfcheck.Finding]) -> None:
        super().__init__(message)
        self.findings = findings
        self.acceptable = all(f.name != "cannot_write" for f in findings)


class StorageAccess:
    def __init__(
        self, *, db: Database, keys: MasterKeys, buckets: BucketClients, clock: Clock,
        broker_arn: str | None = None,
    ) -> None:
        self._db = db
        self._keys = keys
        self._buckets = buckets
        self._clock = clock
        # The broker's own AWS identity (`BUCKETREEL_BROKER_ARN`), for the trust policy
        self._broker_arn = broker_arn

    def close(self) -> None:
        self._buckets.io.close()

    def connections(self) -> contextlib.AbstractAsyncContextManager[None]:
        """The buckets' shared HTTP session (HeadObject), for the app's life (`broker.app`)."""
        return self._buckets.http.opened()

    # -- external ID ----------------------------------------------------------------------

    async def external_id(self, tenant_id: str) -> str:
        """The tenant's external ID for the role option, made on first use, never changed."""
        async for txn in self._db.attempts():
            async with txn as conn:
                row = await access_row(TenantScope(conn, tenant_id), self._clock())
                result = str(row.external_id)
        return result

    # -- save, check, status --------------------------------------------------------------

    async def save(
        self,
        tenant_id: str,
        *,
        bucket: str,
        region: str,
        endpoint_url: str | None,
        prefix: str,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        role_arn: str | None = None,
        accept_risk: bool = False,
        actor: str,
    ) -> dict[str, Any]:
        if endpoint_url is not None:
            self._buckets.policy.check_url(endpoint_url)  # its form first: no DNS for junk
        external_id = await self.external_id(tenant_id) if role_arn else None
        candidate = storage_config.candidate(
            tenant_id, bucket=bucket, region=region, endpoint_url=endpoint_url, prefix=prefix,
            access_key_id=access_key_id, secret_access_key=secret_access_key,
            role_arn=role_arn, external_id=external_id,
        )
        if endpoint_url is not None:  # a refused host is a 400 naming it, before any probe
            await self._buckets.io.run(
                tenant_id, self._buckets.policy.resolve, endpoint_url, deadline=CLIENT_DEADLINE
            )
        report = await self._run(candidate)
        if report.findings:
            found = "; ".join(f"{f.name} ({f.message}; {f.outcome})" for f in report.findings)
            if not report.can_write:  # no risk to accept: these credentials cannot do the job
                raise StorageRisk(
                    f"the self-check found: {found}. Nothing was saved. Check the key (or the "
                    "role), the bucket, region and endpoint, and the identity policy.",
                    findings=report.findings,
                )
            if not accept_risk:
                raise StorageRisk(
                    f"the self-check found: {found}. Nothing was saved. Fix the IAM policies "
                    "(bucketreel-broker iam-policy), or save anyway with accept_risk "
                    "(--accept-risk).",
                    findings=report.findings,
                )
        now = self._clock()
        async for txn in self._db.attempts():
            async with txn as conn:
                scope = TenantScope(conn, tenant_id)
                await audit.lock_chain(scope)  # first (README's lock order)
                version = await storage_config.save(
                    scope, self._keys, bucket=bucket, region=region, endpoint_url=endpoint_url,
                    prefix=prefix, access_key_id=access_key_id,
                    secret_access_key=secret_access_key, role_arn=role_arn, now=now, actor=actor,
                    audit_details={"findings": report.finding_names},
                )
                if report.findings:
                    await audit.record(
                        scope, at=now, actor=actor, action="storage.risk_accepted", target=bucket,
                        details={"findings": report.finding_names, "credential_version": version},
                    )
                await self._store_report(scope, report, actor=actor, now=now)
        return {
            "tenant_id": tenant_id,
            "bucket": bucket,
            "auth_mode": candidate.auth_mode,
            "credential_version": version,
            "check": report.as_json(),
        }

    async def media_origins(self, tenant_id: str) -> list[str]:
        """The origins the player's media comes from (the pages' `media-src`)."""
        async with self._db.transaction() as conn:
            return await origins.media_origins(TenantScope(conn, tenant_id))

    async def check(self, tenant_id: str, *, actor: str) -> dict[str, Any]:
        """Run the self-check on the saved storage; record the result and the access state."""
        async with self._db.transaction() as conn:
            config = await storage_config.load(TenantScope(conn, tenant_id), self._keys)
        report = await self._run(config)
        now = self._clock()
        async for txn in self._db.attempts():
            async with txn as conn:
                scope = TenantScope(conn, tenant_id)
                await audit.lock_chain(scope)  # first (README's lock order)
                await audit.record(
                    scope, at=now, actor=actor, action="storage.check", target=config.bucket,
                    details={"findings": report.finding_names, "can_write": report.can_write},
                )
                await self._store_report(scope, report, actor=actor, now=now)
        return await self.status(tenant_id)

    async def status(self, tenant_id: str) -> dict[str, Any]:
        """What an admin sees: the storage (never a secret), the access state, the last check."""
        async with self._db.transaction() as conn:
            scope = TenantScope(conn, tenant_id)
            access = await access_row(scope, self._clock())
            try:
                config: StorageConfig | None = await storage_config.load(scope, self._keys)
            except storage_config.StorageNotConfigured:
                config = None
        result: dict[str, Any] = {
            "configured": config is not None,
            "external_id": access.external_id,
            "state": access.state,
            "state_reason": access.state_reason,
            "state_changed_at": (
                format_timestamp(access.state_changed_at) if access.state_changed_at else None
            ),
            "last_check": json.loads(access.check_result) if access.check_result else None,
        }
        if config is not None:
            result.update(
                bucket=config.bucket, region=config.region, endpoint_url=config.endpoint_url,
                prefix=config.prefix, auth_mode=config.auth_mode,
                access_key_id=config.access_key_id, role_arn=config.role_arn,
                credential_version=config.credential_version,
            )
        return result

    async def revoked_since(self, tenant_id: str) -> datetime | None:
        """When the tenant's storage access was found revoked; None while it works (a read
        of the state only: no request to the bucket)."""
        async with self._db.transaction() as conn:
            row = await TenantScope(conn, tenant_id).one(storage_access)
        if row is None or row.state != ACCESS_REVOKED:
            return None
        since: datetime | None = row.state_changed_at
        return since

    async def policies(
        self, tenant_id: str, *, bucket: str | None = None, prefix: str | None = None,
        principal_arn: str | None = None,
    ) -> dict[str, Any]:
        """The identity, bucket and trust policies for the tenant's storage, and the customer's
        read policy for the vault (or for `bucket`
        and `prefix`, before any is saved), with the tenant's external ID in the trust policy.
        The bucket policy's principal is the role in the role option, else `principal_arn`;
        what is not known stays an upper-case placeholder, listed in `placeholders`."""
        if principal_arn is not None and len(principal_arn) > MAX_ARN:
            raise InvalidInput(f"principal_arn is longer than {MAX_ARN} characters")
        external_id = await self.external_id(tenant_id)
        async with self._db.transaction() as conn:
            try:
                config: StorageConfig | None = await storage_config.load(
                    TenantScope(conn, tenant_id), self._keys
                )
            except storage_config.StorageNotConfigured:
                config = None
        if bucket is None:
            if config is None:
                raise storage_config.StorageNotConfigured(
                    "no bucket is configured for this tenant: name one (bucket, prefix)"
                )
            bucket = config.bucket
            prefix = config.prefix if prefix is None else prefix
        if principal_arn is None and config is not None and config.auth_mode == storage_config.ROLE:
            principal_arn = config.role_arn
        documents = policy.policies(
            bucket, prefix or "", principal_arn=principal_arn, assumer_arn=self._broker_arn,
            external_id=external_id,
        )
        # The customer's own read access for `bucketreel-vault` (never the broker's)
        documents["vault_policy"] = vault_policy(bucket, prefix or "")
        principal = principal_arn or policy.PRINCIPAL_PLACEHOLDER
        placeholders = ["ACCOUNT_ID"] if principal == policy.PRINCIPAL_PLACEHOLDER else []
        if self._broker_arn is None:  # the broker's own identity: its operator knows it
            placeholders.append("BROKER_ACCOUNT_ID")
        return {
            "bucket": bucket, "prefix": (prefix or "").strip("/"), "external_id": external_id,
            "principal_arn": principal,
            "assumer_arn": self._broker_arn or policy.ASSUMER_PLACEHOLDER,
            "placeholders": placeholders, **documents,
        }

    # -- revocation -----------------------------------------------------------------------

    async def watch(self, tenant_id: str) -> bool:
        """The periodic check (`broker.storage.monitor`): do the saved credentials still
        work? A 403 (or STS refusing the role) marks the storage revoked; a bucket that does
        not answer raises StorageUnavailable and changes nothing."""
        async with self._db.transaction() as conn:
            config = await storage_config.load(TenantScope(conn, tenant_id), self._keys)
        try:
            bucket = await self._buckets.client(config)
        except StorageAccessDenied as exc:
            await self.mark_revoked(
                tenant_id, reason=exc.message, credential_version=config.credential_version
            )
            return False
        return await self.access_works(tenant_id, bucket)

    async def access_works(self, tenant_id: str, bucket: BucketClient) -> bool:
        """HeadObject on the canary: False (and the storage marked revoked) on a 403."""
        async with self._db.transaction() as conn:
            row = await TenantScope(conn, tenant_id).one(storage_access)
        canary = row.canary_key if row is not None else None
        try:
            if canary is None:  # never self-checked: a 403 cannot be told apart; assume revoked
                raise StorageAccessDenied("no canary object to check the credentials with")
            await self._buckets.head(bucket, canary)
        except StorageAccessDenied:
            version = bucket.config.credential_version
            await self.mark_revoked(
                tenant_id, reason="the bucket answered 403 to the broker's credentials "
                f"(credential version {version})", credential_version=version,
            )
            return False
        return True

    async def confirm_access(self, tenant_id: str, bucket: BucketClient) -> None:
        """Raise StorageAccessDenied (503) when the tenant's credentials are revoked."""
        if not await self.access_works(tenant_id, bucket):
            raise StorageAccessDenied(
                "the bucket refuses the broker's credentials (access revoked); an admin must "
                "install new ones (bucketreel-broker admin set-storage)"
            )

    async def mark_revoked(
        self, tenant_id: str, *, reason: str, credential_version: int | None = None
    ) -> None:
        """Mark the storage revoked, unless it is already, or `credential_version` (what was
        refused) is no longer the saved one: new credentials saved meanwhile stand."""
        now = self._clock()
        async for txn in self._db.attempts():
            async with txn as conn:
                scope = TenantScope(conn, tenant_id)
                await audit.lock_chain(scope)  # first (README's lock order)
                row = await access_row(scope, now)
                if row.state == ACCESS_REVOKED:
                    return
                if credential_version is not None:
                    saved = await scope.one(storage_configs)
                    if saved is None or saved.credential_version != credential_version:
                        return
                await scope.update(
                    storage_access, state=ACCESS_REVOKED, state_reason=reason[:300],
                    state_changed_at=now,
                )
                await audit.record(
                    scope, at=now, actor="broker", action="storage.access_revoked",
                    target=tenant_id, details={"reason": reason},
                )
        log.warning("tenant %s: storage access revoked: %s", tenant_id, reason)

    # -- internals ------------------------------------------------------------------------

    async def _run(self, config: StorageConfig) -> selfcheck.CheckReport:
        """The self-check, on the storage pool: one per tenant at a time and a few per
        broker (429 otherwise), all of it within SELFCHECK_DEADLINE."""
        now = self._clock()
        async with self._buckets.io.selfcheck_slot(config.tenant_id):
            deadline = time.monotonic() + SELFCHECK_DEADLINE

            def check() -> selfcheck.CheckReport:
                bucket = self._buckets.fresh(config)  # DNS, AssumeRole: inside the deadline
                return selfcheck.run(bucket, now, deadline=deadline)

            try:
                return await self._buckets.io.run(
                    config.tenant_id, check, deadline=SELFCHECK_DEADLINE + 1.0
                )
            except RateLimited:
                raise
            except StorageTimeout:
                outcome = "error: no answer in time"
            except BrokerError as exc:  # STS refused or did not answer; a refused host
                outcome = f"error: {exc.message}"
        return selfcheck.CheckReport(
            checked_at=now, can_write=False, canary_key=None,
            findings=[selfcheck.Finding(
                "cannot_write", "red", selfcheck.FINDINGS["cannot_write"], outcome,
            )],
        )

    async def _store_report(
        self, scope: TenantScope, report: selfcheck.CheckReport, *, actor: str, now: datetime
    ) -> None:
        row = await access_row(scope, now)
        values: dict[str, Any] = {
            "checked_at": report.checked_at,
            "check_result": json.dumps(report.as_json()),
        }
        if report.can_write:
            values["canary_key"] = report.canary_key
            if row.state != OK:
                values.update(state=OK, state_reason=None, state_changed_at=now)
                await audit.record(
                    scope, at=now, actor=actor, action="storage.access_restored",
                    target=scope.tenant_id,
                )
                log.info("tenant %s: storage access restored", scope.tenant_id)
        elif row.state != ACCESS_REVOKED:
            values.update(
                state=ACCESS_REVOKED, state_reason="the self-check could not write",
                state_changed_at=now,
            )
            await audit.record(
                scope, at=now, actor=actor, action="storage.access_revoked",
                target=scope.tenant_id, details={"reason": "the self-check could not write"},
            )
            log.warning("tenant %s: storage access revoked: the self-check could not write",
                        scope.tenant_id)
        await scope.update(storage_access, **values)


async def access_row(scope: TenantScope, now: datetime) -> Any:
    """The tenant's access row, made on first use. Two replicas may make it at once: the
    second insert does nothing (ON CONFLICT DO NOTHING, waiting for the first to commit), and
    both read the same row, so everyone is shown one external ID."""
    row = await scope.one(storage_access)
    if row is None:
        dialect_insert = pg_insert if scope.conn.dialect.name == "postgresql" else sqlite_insert
        await scope.execute(
            dialect_insert(storage_access)
            .values(
                tenant_id=scope.tenant_id, external_id="bucketreel-" + secrets.token_urlsafe(24),
                state=OK, created_at=now,
            )
            .on_conflict_do_nothing(index_elements=[storage_access.c.tenant_id])
        )
        row = await scope.one(storage_access)
    return row
