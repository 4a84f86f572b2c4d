"""A segment's way into the bucket: the upload grant, then the verified completion.

The broker chooses every object key (DESIGN G4) and never touches a segment's bytes (G1):
it signs a PUT for the agent and later checks the object's metadata with `HeadObject`.
"""

from __future__ import annotations

import base64
import functools
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from broker.audit import log as audit
from broker.bucket import metadata as bucket_metadata
from broker.db.database import RerunTransaction
from broker.db.schema import segments, upload_grants
from broker.db.scope import TenantScope
from broker.errors import Conflict
from broker.identity import Principal
from broker.recordings import bounds, custody
from broker.recordings.common import (
    PENDING,
    RECORDING,
    VERIFIED,
    RecordingParts,
    actor,
    completion_read,
    device_recording_around,
    device_recording_segment,
    storage_row_of,
)
from broker.storage import config as storage_config
from broker.storage.config import StorageConfig
from broker.storage.credentials import StorageAccessDenied
from broker.storage.s3 import ObjectHead, PresignedPut
from shared.errors import ErrorCode
from shared.keys import segment_key
from shared.wire import UploadGrant, UploadRequest, format_timestamp

# Built once (bound per call: no statement rebuilt per request).
_NEAREST_BELOW = (
    select(segments)
    .where(segments.c.tenant_id == bindparam("tenant"),
           segments.c.recording_id == bindparam("recording"), segments.c.seq < bindparam("seq"))
    .order_by(segments.c.seq.desc())
    .limit(1)
)
_NEW_SEGMENT = insert(segments).returning(*segments.c)
_NEW_GRANT = insert(upload_grants)


@functools.cache
def _new_segment_and_grant(columns: tuple[str, ...]) -> Any:
    """PostgreSQL: a new segment (its `columns`, bound as `s_<name>`) and its first grant
    (bound as `g_<name>`, the segment's id as `s_id`) in one statement, the segment row
    returned. Both inserts are a data-modifying WITH of one statement: both happen, or
    neither; the grant's tenant link to the segment is checked at the statement's end, when
    the segment is there. Built once per set of columns (with or without custody)."""
    segment = insert(segments).values(
        {name: bindparam(f"s_{name}", type_=segments.c[name].type) for name in columns}
    ).returning(*segments.c).cte("declared")
    grant = insert(upload_grants).values({
        column.name: bindparam(
            "s_id" if column.name == "segment_id" else f"g_{column.name}", type_=column.type
        )
        for column in upload_grants.c
    }).cte("granted")
    return select(segment).add_cte(grant)


_VERIFY = (
    update(segments)
    .where(segments.c.tenant_id == bindparam("tenant"), segments.c.id == bindparam("segment"),
           segments.c.state != VERIFIED)
    .values(state=VERIFIED, verified_at=bindparam("when"))
)


@dataclass(frozen=True, slots=True)
class _Decision:
    """What a grant's transaction decided: the segment (declared now or before) and where
    it goes."""

    segment: Row[Any]
    config: StorageConfig
    regrant: bool  # declared by an earlier request (whose PUT may have failed)
    metadata: dict[str, str]  # the segment's own proof, signed into the PUT (`shared.bucket`)
    granted: bool = False  # its grant row is inserted already (with the segment's)


class Uploads(RecordingParts):
    async def grant_upload(
        self, principal: Principal, recording_id: str, seq: int, declared: UploadRequest
    ) -> UploadGrant:
        """One transaction: check the device, decide, sign and record the grant with its
        audit entry. Signing is local computation with the tenant's static keys once its
        client is made; when it may need the network (the first grant after a start or a
        storage change makes the client; an assumed role's session may need STS), it runs on
        the storage pool between the deciding transaction and a second that records the
        grant: no request holds a database lock while it waits."""
        now = self._clock()
        put: PresignedPut | None = None
        async for txn in self._db.attempts(tenant=principal.tenant_id):
            async with txn as conn:
                scope = TenantScope(conn, principal.tenant_id)
                decided = await self._decide(scope, principal, recording_id, seq, declared, now)
                bucket = self._buckets.local_signer(decided.config)
                if bucket is not None:
                    put = bucket.presign_put(**self._signed(decided))
                    await self._record_grant(scope, principal, decided, now)
        if put is None:
            # A declared segment without a grant is simply granted again on the next request.
            bucket, put = await self._buckets.presign_put(
                decided.config, **self._signed(decided)
            )
            now = self._clock()
            async for txn in self._db.attempts(tenant=principal.tenant_id):
                async with txn as conn:
                    scope = TenantScope(conn, principal.tenant_id)
                    await self._record_grant(scope, principal, decided, now)
        if decided.regrant and self._storage is not None and bucket is not None:
            # An earlier PUT of this segment failed: were the credentials revoked? (G6)
            await self._storage.confirm_access(principal.tenant_id, bucket)
        expires_at = now + timedelta(seconds=self._upload_ttl)
        return UploadGrant(
            url=put.url, method="PUT", headers=put.headers, expires_at=format_timestamp(expires_at)
        )

    def _signed(self, decided: _Decision) -> dict[str, Any]:
        """What the presigned PUT signs: exactly this object and these bytes, with the
        segment's custody record as its metadata."""
        segment = decided.segment
        return {
            "key": segment.object_key, "size": segment.size, "sha256_b64": segment.sha256,
            "md5_b64": segment.md5, "ttl": self._upload_ttl, "metadata": decided.metadata,
        }

    async def _decide(
        self, scope: TenantScope, principal: Principal, recording_id: str, seq: int,
        declared: UploadRequest, now: datetime,
    ) -> _Decision:
        recording, around = await device_recording_around(scope, principal, recording_id, seq)
        config = await storage_config.resolve(
            scope, self._keys, storage_row_of(recording), self._configs
        )
        # Signed in this transaction (`grant_upload`), a new segment's grant row goes in
        # with it: one statement on PostgreSQL.
        grant = (
            self._grant_row(scope, config, now)
            if scope.conn.dialect.name == "postgresql"
            and self._buckets.local_signer(config) is not None
            else None
        )
        where = {"tenant": scope.tenant_id, "recording": recording_id, "seq": seq}
        segment = around.get(seq)
        if segment is None:
            if recording.state != RECORDING:
                raise Conflict(
                    "the recording is finished; it takes no new segments",
                    code=ErrorCode.RECORDING_FINISHED,
                )
            below = around.get(seq - 1)
            if below is None and seq > 0:  # a gap below: the nearest is further down
                below = (await scope.execute(_NEAREST_BELOW, where)).first()
            above = next((around[n] for n in sorted(around) if n > seq), None)
            segment = await self._declare(scope, recording, seq, declared, now, config,
                                          recording.device_public_key, below, above, grant)
            metadata = bucket_metadata.for_segment(scope.tenant_id, recording, segment)
            return _Decision(segment, config, regrant=False, metadata=metadata,
                             granted=grant is not None)
        if segment.state == VERIFIED:
            raise Conflict(f"segment {seq} is complete already")
        if (segment.size, segment.sha256, segment.md5) != (
            declared.size, declared.sha256, declared.md5
        ):
            raise Conflict(f"segment {seq} was declared with other content before")
        custody.check_regrant(segment, declared)
        metadata = bucket_metadata.for_segment(scope.tenant_id, recording, segment)
        return _Decision(segment, config, regrant=True, metadata=metadata)

    async def _record_grant(
        self, scope: TenantScope, principal: Principal, decided: _Decision, now: datetime
    ) -> None:
        segment = decided.segment
        if not decided.granted:
            await scope.execute(_NEW_GRANT, {
                **self._grant_row(scope, decided.config, now), "segment_id": segment.id,
            })
        await audit.record(
            scope, at=now, actor=actor(principal), action="segment.grant",
            target=segment.object_key, details={"size": segment.size},
        )

    async def _completion_read(
        self, principal: Principal, recording_id: str, seq: int
    ) -> tuple[Any, StorageConfig] | None:
        """The completion's checks before `HeadObject`, in a transaction of their own (the
        device, its recording, the stored custody record), and what they give: segment
        `seq` and the tenant's storage configuration (None: the segment is verified
        already). On PostgreSQL one call (`completion_read`) when the configuration's row is
        one unsealed before; else (and the first time) a read transaction, which unseals it."""
        if self._db.dialect == "postgresql":
            recording, segment, stored = await completion_read(
                self._db, principal, recording_id, seq
            )
            if not _to_verify(recording, segment):
                return None
            config = storage_config.remembered(principal.tenant_id, stored, self._configs)
            if config is not None:
                return segment, config
        async with self._db.read(tenant=principal.tenant_id) as conn:
            scope = TenantScope(conn, principal.tenant_id)
            recording, segment = await device_recording_segment(
                scope, principal, recording_id, seq
            )
            if not _to_verify(recording, segment):
                return None
            config = await storage_config.resolve(
                scope, self._keys, storage_row_of(recording), self._configs
            )
        return segment, config

    async def complete(self, principal: Principal, recording_id: str, seq: int) -> str:
        read = await self._completion_read(principal, recording_id, seq)
        if read is None:
            return VERIFIED
        segment, config = read
        bucket = await self._buckets.client(config)
        try:
            head = await self._buckets.head(bucket, segment.object_key)
        except StorageAccessDenied:
            # On S3 without a list right a missing object answers 403 too; the canary tells.
            if self._storage is None or not await self._storage.access_works(
                principal.tenant_id, bucket
            ):
                raise
            head = None
        if head is None:
            raise Conflict(
                f"the bucket has no object for segment {seq}: upload it first",
                code=ErrorCode.SEGMENT_NOT_UPLOADED,
            )
        problem = _mismatch(segment, head)
        now = self._clock()
        action, details = (
            ("segment.mismatch", {"problem": problem}) if problem
            else ("segment.verified", {"size": head.size})
        )
        async for txn in self._db.attempts(tenant=principal.tenant_id):
            async with txn as conn:
                scope = TenantScope(conn, principal.tenant_id)
                # a concurrent completion of the same segment verifies and audits it once
                if problem or (await scope.execute(
                    _VERIFY, {"tenant": scope.tenant_id, "segment": segment.id, "when": now}
                )).rowcount:
                    await audit.record(
                        scope, at=now, actor=actor(principal), action=action,
                        target=segment.object_key, details=details,
                    )
        if problem:  # raised after the audit entry has committed
            raise Conflict(
                f"the object for segment {seq} does not match what was declared: {problem}",
                code=ErrorCode.SEGMENT_MISMATCH,
            )
        return VERIFIED

    def _grant_row(
        self, scope: TenantScope, config: StorageConfig, now: datetime
    ) -> dict[str, Any]:
        """An `upload_grants` row but its segment: issued now, for the upload TTL."""
        return {
            "id": str(uuid.uuid4()), "tenant_id": scope.tenant_id,
            "credential_version": config.credential_version, "issued_at": now,
            "expires_at": now + timedelta(seconds=self._upload_ttl),
        }

    async def _declare(
        self,
        scope: TenantScope,
        recording: Row[Any],
        seq: int,
        declared: UploadRequest,
        now: datetime,
        config: StorageConfig,
        public_key: str | None,
        below: Row[Any] | None,
        above: Row[Any] | None,
        grant: dict[str, Any] | None = None,
    ) -> Row[Any]:
        """A new segment row, after its time and custody checks against `below` and `above`,
        the recording's declared segments nearest below and above `seq`; with `grant` (an
        upload grant's row but its segment, PostgreSQL only), its grant row in the same
        statement."""
        key = segment_key(config.prefix, scope.tenant_id, recording.user_id, recording.id, seq)
        self._check_time(recording, seq, declared, now, below, above)
        record = custody.admit(recording, seq, declared, public_key, before=below, after=above)
        row = {
            "id": str(uuid.uuid4()), "tenant_id": scope.tenant_id,
            "recording_id": recording.id, "seq": seq, "object_key": key, "state": PENDING,
            "size": declared.size, "sha256": declared.sha256, "md5": declared.md5,
            "started_at": declared.started_at, "duration_ms": declared.duration_ms,
            "created_at": now, "codec": declared.codec, **record,
        }
        try:
            if grant is None:
                inserted = await scope.execute(_NEW_SEGMENT, row)
            else:
                inserted = await scope.execute(_new_segment_and_grant(tuple(row)), {
                    **{f"s_{name}": value for name, value in row.items()},
                    **{f"g_{name}": value for name, value in grant.items()},
                })
        except IntegrityError:
            # A concurrent request declared this seq first (PostgreSQL; SQLite's writers
            # take turns): run again, and this is a grant again of that declaration.
            raise RerunTransaction from None
        return inserted.one()

    def _check_time(
        self,
        recording: Row[Any],
        seq: int,
        declared: UploadRequest,
        now: datetime,
        below: Row[Any] | None,
        above: Row[Any] | None,
    ) -> None:
        """The declared time is plausible and in seq order (`broker.recordings.bounds`), given
        the recording's declared segments nearest below and above `seq`."""
        bounds.check_segment(
            seq=seq,
            started_at=declared.started_at,
            duration_ms=declared.duration_ms,
            recording_start=recording.started_at,
            before=None if below is None else (below.started_at, below.duration_ms),
            after=None if above is None else (above.started_at, above.duration_ms),
            now=now,
            skew=self._skew,
        )


def _to_verify(recording: Any, segment: Any) -> bool:
    """Whether a completion has a segment to verify: False when it is verified already;
    a 409 when its stored custody record no longer verifies (`custody.check_stored`)."""
    if segment.state == VERIFIED:
        return False
    custody.check_stored(recording, segment, recording.device_public_key)
    return True


def _mismatch(segment: Row[Any], head: ObjectHead) -> str | None:
    """Why the stored object is not the declared segment, or None when it is.

    S3 itself refuses a PUT whose bytes do not match the signed Content-MD5 and SHA-256, so
    on S3 these checks only confirm. They matter on endpoints that store whatever they get:
    every digest the endpoint returns must agree with the declaration.
    """
    if head.size != segment.size:
        return f"size {head.size} instead of {segment.size}"
    if head.sha256 is not None and head.sha256 != segment.sha256:
        return "SHA-256 differs"
    # The ETag of a single-part upload is the MD5 of its bytes, unless encrypted with KMS.
    etag = (head.etag or "").strip('"')
    etag_is_md5 = head.server_side_encryption != "aws:kms" and len(etag) == 32
    if etag_is_md5 and etag != base64.b64decode(segment.md5).hex():
        return "MD5 differs"
    return None
