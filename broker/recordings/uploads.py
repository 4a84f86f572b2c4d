"""A segment's way into the bucket: the upload grant, then the verified completion.

The broker chooses every object key (DESIGN G4) and never touches a segment's bytes (G1):
it signs a PUT for the agent and later checks the object's metadata with `HeadObject`.
"""

from __future__ import annotations

import base64
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, select

from broker.audit import log as audit
from broker.bucket import metadata as bucket_metadata
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
    own_recording,
    segment_row,
)
from broker.storage import config as storage_config
from broker.storage.credentials import StorageAccessDenied
from broker.storage.s3 import ObjectHead
from shared.errors import ErrorCode
from shared.keys import segment_key
from shared.wire import UploadGrant, UploadRequest, format_timestamp


class Uploads(RecordingParts):
    async def grant_upload(
        self, principal: Principal, recording_id: str, seq: int, declared: UploadRequest
    ) -> UploadGrant:
        """Decide in one transaction, sign with none open (the storage pool may wait on STS),
        record the grant in a second: no request holds a database lock while it waits."""
        now = self._clock()
        async for txn in self._db.attempts():
            async with txn as conn:
                scope = TenantScope(conn, principal.tenant_id)
                recording = await own_recording(scope, principal, recording_id)
                segment = await scope.one(
                    segments, segments.c.recording_id == recording_id, segments.c.seq == seq
                )
                regrant = segment is not None
                if segment is None:
                    if recording.state != RECORDING:
                        raise Conflict(
                            "the recording is finished; it takes no new segments",
                            code=ErrorCode.RECORDING_FINISHED,
                        )
                    segment = await self._declare(scope, recording, seq, declared, now)
                elif segment.state == VERIFIED:
                    raise Conflict(f"segment {seq} is complete already")
                elif (segment.size, segment.sha256, segment.md5) != (
                    declared.size,
                    declared.sha256,
                    declared.md5,
                ):
                    raise Conflict(f"segment {seq} was declared with other content before")
                else:
                    custody.check_regrant(segment, declared)
                config = await storage_config.load(scope, self._keys)
                decided: Row[Any] = segment
                metadata = bucket_metadata.for_segment(principal.tenant_id, recording, segment)
        segment = decided
        # A declared segment without a grant is simply granted again on the next request.
        bucket, put = await self._buckets.presign_put(
            config,
            segment.object_key,
            size=segment.size,
            sha256_b64=segment.sha256,
            md5_b64=segment.md5,
            ttl=self._upload_ttl,
            metadata=metadata,  # the segment's own proof, signed in (`shared.bucket`)
        )
        now = self._clock()
        expires_at = now + timedelta(seconds=self._upload_ttl)
        async for txn in self._db.attempts():
            async with txn as conn:
                scope = TenantScope(conn, principal.tenant_id)
                await audit.lock_chain(scope)  # first (README's lock order)
                await scope.insert(
                    upload_grants,
                    id=str(uuid.uuid4()),
                    segment_id=segment.id,
                    credential_version=config.credential_version,
                    issued_at=now,
                    expires_at=expires_at,
                )
                await audit.record(
                    scope,
                    at=now,
                    actor=actor(principal),
                    action="segment.grant",
                    target=segment.object_key,
                    details={"size": segment.size},
                )
        if regrant and self._storage is not None:
            # An earlier PUT of this segment failed: were the credentials revoked? (G6)
            await self._storage.confirm_access(principal.tenant_id, bucket)
        return UploadGrant(
            url=put.url, method="PUT", headers=put.headers, expires_at=format_timestamp(expires_at)
        )

    async def complete(self, principal: Principal, recording_id: str, seq: int) -> str:
        async with self._db.transaction() as conn:
            scope = TenantScope(conn, principal.tenant_id)
            recording = await own_recording(scope, principal, recording_id)
            segment = await segment_row(scope, recording_id, seq)
            if segment.state == VERIFIED:
                return VERIFIED
            await custody.check_stored(scope, recording, segment)
            config = await storage_config.load(scope, self._keys)
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
        now = self._clock()
        async for txn in self._db.attempts():
            async with txn as conn:
                scope = TenantScope(conn, principal.tenant_id)
                await audit.lock_chain(scope)  # first (README's lock order)
                if head is None:
                    raise Conflict(
                        f"the bucket has no object for segment {seq}: upload it first",
                        code=ErrorCode.SEGMENT_NOT_UPLOADED,
                    )
                problem = _mismatch(segment, head)
                if problem:
                    await audit.record(
                        scope,
                        at=now,
                        actor=actor(principal),
                        action="segment.mismatch",
                        target=segment.object_key,
                        details={"problem": problem},
                    )
                else:
                    await scope.update(
                        segments, segments.c.id == segment.id, state=VERIFIED, verified_at=now
                    )
                    await audit.record(
                        scope,
                        at=now,
                        actor=actor(principal),
                        action="segment.verified",
                        target=segment.object_key,
                        details={"size": head.size},
                    )
        if problem:  # raised after the audit entry has committed
            raise Conflict(
                f"the object for segment {seq} does not match what was declared: {problem}",
                code=ErrorCode.SEGMENT_MISMATCH,
            )
        return VERIFIED

    async def _declare(
        self,
        scope: TenantScope,
        recording: Row[Any],
        seq: int,
        declared: UploadRequest,
        now: datetime,
    ) -> Row[Any]:
        config_prefix = (await storage_config.load(scope, self._keys)).prefix
        key = segment_key(config_prefix, scope.tenant_id, recording.user_id, recording.id, seq)
        await self._check_time(scope, recording, seq, declared, now)
        record = await custody.admit(scope, recording, seq, declared)
        segment_id = str(uuid.uuid4())
        await scope.insert(
            segments,
            id=segment_id,
            recording_id=recording.id,
            seq=seq,
            object_key=key,
            state=PENDING,
            size=declared.size,
            sha256=declared.sha256,
            md5=declared.md5,
            started_at=declared.started_at,
            duration_ms=declared.duration_ms,
            created_at=now,
            codec=declared.codec,
            **record,
        )
        return await segment_row(scope, recording.id, seq)

    async def _check_time(
        self,
        scope: TenantScope,
        recording: Row[Any],
        seq: int,
        declared: UploadRequest,
        now: datetime,
    ) -> None:
        """The declared time is plausible and in seq order (`broker.recordings.bounds`)."""

        async def neighbour(*criteria: Any, order: Any) -> tuple[datetime, int] | None:
            row = (
                await scope.execute(
                    select(segments.c.started_at, segments.c.duration_ms)
                    .where(segments.c.tenant_id == scope.tenant_id, *criteria)
                    .order_by(order)
                    .limit(1)
                )
            ).first()
            return None if row is None else (row.started_at, row.duration_ms)

        in_recording = segments.c.recording_id == recording.id
        bounds.check_segment(
            seq=seq,
            started_at=declared.started_at,
            duration_ms=declared.duration_ms,
            recording_start=recording.started_at,
            before=await neighbour(in_recording, segments.c.seq < seq, order=segments.c.seq.desc()),
            after=await neighbour(in_recording, segments.c.seq > seq, order=segments.c.seq),
            now=now,
            skew=self._skew,
        )


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
