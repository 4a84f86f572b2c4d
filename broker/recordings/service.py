"""Recordings and their segments: start, upload grants, verified completion, finish, read.

The broker chooses every object key (DESIGN G4) and never touches a segment's bytes (G1):
it signs a PUT for the agent and later checks the object's metadata with `HeadObject`.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, func, select

from broker.audit import log as audit
from broker.clock import Clock
from broker.db.database import Database
from broker.db.schema import recording_gaps, recordings, segments, upload_grants
from broker.db.scope import TenantScope
from broker.errors import Conflict, NotFound
from broker.identity import Principal
from broker.recordings import bounds, custody
from broker.settings import MasterKeys
from broker.storage import config as storage_config
from broker.storage.credentials import StorageAccessDenied
from broker.storage.s3 import BucketClients, ObjectHead
from broker.storage.service import StorageAccess
from shared.errors import ErrorCode
from shared.keys import segment_key
from shared.wire import (
    GapInfo,
    GapReport,
    RecordingInfo,
    SegmentInfo,
    UploadGrant,
    UploadRequest,
    format_timestamp,
)

RECORDING = "recording"
FINISHED = "finished"
PENDING = "pending"
VERIFIED = "verified"


@dataclass(frozen=True, slots=True)
class ViewUrl:
    url: str
    expires_at: datetime


class RecordingService:
    def __init__(
        self,
        *,
        db: Database,
        keys: MasterKeys,
        buckets: BucketClients,
        upload_ttl: int,
        view_ttl: int,
        clock: Clock,
        storage: StorageAccess | None = None,
        clock_skew: int = bounds.DEFAULT_CLOCK_SKEW,
    ) -> None:
        self._storage = storage  # revocation checks (DESIGN G6)
        self._skew = timedelta(seconds=clock_skew)  # declared times: broker.recordings.bounds
        self._db = db
        self._keys = keys
        self._buckets = buckets
        self._upload_ttl = upload_ttl
        self._view_ttl = view_ttl
        self._clock = clock

    async def start(self, principal: Principal, started_at: datetime) -> str:
        """A new recording for the calling device; any it left open before is closed."""
        now = self._clock()
        bounds.check_recording_start(started_at, now=now, skew=self._skew)
        recording_id = str(uuid.uuid4())
        async for txn in self._db.attempts():
            async with txn as conn:
                scope = TenantScope(conn, principal.tenant_id)
                await audit.lock_chain(scope)  # first (README's lock order)
                await self._close_left_open(scope, principal, now)
                await scope.insert(
                    recordings,
                    id=recording_id,
                    user_id=principal.user_id,
                    device_id=principal.subject,
                    state=RECORDING,
                    started_at=started_at,
                    created_at=now,
                )
                await audit.record(
                    scope,
                    at=now,
                    actor=_actor(principal),
                    action="recording.start",
                    target=recording_id,
                )
        return recording_id

    async def _close_left_open(
        self, scope: TenantScope, principal: Principal, now: datetime
    ) -> None:
        """Finish the device's recordings still open, with a gap `agent_died`.

        One agent runs per device (its instance lock), and it finishes its recording on any
        orderly stop. An open one when the device starts another is a dead run's that its
        restart could not close (the broker was unreachable then): left open, it would show
        as recording forever.
        """
        left_open = await scope.all(
            recordings,
            recordings.c.device_id == principal.subject,
            recordings.c.state == RECORDING,
        )
        for old in left_open:
            await scope.update(
                recordings, recordings.c.id == old.id, state=FINISHED, finished_at=now
            )
            await scope.insert(
                recording_gaps,
                id=str(uuid.uuid4()),
                recording_id=old.id,
                seqs="[]",
                reason="agent_died",
                reported_at=now,
            )
            await audit.record(
                scope,
                at=now,
                actor=_actor(principal),
                action="recording.finish",
                target=old.id,
                details={"reason": "agent_died", "closed_by": "the device's next recording"},
            )

    async def grant_upload(
        self, principal: Principal, recording_id: str, seq: int, declared: UploadRequest
    ) -> UploadGrant:
        """Decide in one transaction, sign with none open (the storage pool may wait on STS),
        record the grant in a second: no request holds a database lock while it waits."""
        now = self._clock()
        async for txn in self._db.attempts():
            async with txn as conn:
                scope = TenantScope(conn, principal.tenant_id)
                recording = await _own_recording(scope, principal, recording_id)
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
        segment = decided
        # A declared segment without a grant is simply granted again on the next request.
        bucket, put = await self._buckets.presign_put(
            config,
            segment.object_key,
            size=segment.size,
            sha256_b64=segment.sha256,
            md5_b64=segment.md5,
            ttl=self._upload_ttl,
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
                    actor=_actor(principal),
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
            recording = await _own_recording(scope, principal, recording_id)
            segment = await _segment(scope, recording_id, seq)
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
                        actor=_actor(principal),
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
                        actor=_actor(principal),
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

    async def finish(self, principal: Principal, recording_id: str) -> RecordingInfo:
        now = self._clock()
        async for txn in self._db.attempts():
            async with txn as conn:
                scope = TenantScope(conn, principal.tenant_id)
                await audit.lock_chain(scope)  # first (README's lock order)
                recording = await _own_recording(scope, principal, recording_id)
                if recording.state != FINISHED:
                    await scope.update(
                        recordings, recordings.c.id == recording_id, state=FINISHED, finished_at=now
                    )
                    await audit.record(
                        scope,
                        at=now,
                        actor=_actor(principal),
                        action="recording.finish",
                        target=recording_id,
                    )
                result = await recording_info(scope, recording_id)
        return result

    async def report_gap(
        self, principal: Principal, recording_id: str, gap: GapReport
    ) -> RecordingInfo:
        """Record segments the recording's own device says will never arrive, and why."""
        now = self._clock()
        async for txn in self._db.attempts():
            async with txn as conn:
                scope = TenantScope(conn, principal.tenant_id)
                await audit.lock_chain(scope)  # first (README's lock order)
                recording = await _own_recording(scope, principal, recording_id)
                bounds.check_gap(
                    gap.from_, gap.to,
                    recording_start=recording.started_at, now=now, skew=self._skew,
                )
                signature = await custody.admit_gap(scope, recording, gap)
                await scope.insert(
                    recording_gaps,
                    id=str(uuid.uuid4()),
                    recording_id=recording_id,
                    seqs=json.dumps(gap.seqs),
                    reason=gap.reason,
                    reported_at=now,
                    gap_from=gap.from_,
                    gap_to=gap.to,
                    signature=signature,
                )
                await audit.record(
                    scope,
                    at=now,
                    actor=_actor(principal),
                    action="recording.gap",
                    target=recording_id,
                    details={"reason": gap.reason, "segments": len(gap.seqs)},
                )
                result = await recording_info(scope, recording_id)
        return result

    async def verify_custody(self, tenant_id: str, recording_id: str) -> custody.VerifyReport:
        """Re-check a recording's chain of custody against the bucket (operator command)."""
        async with self._db.transaction() as conn:
            scope = TenantScope(conn, tenant_id)
            config = await storage_config.load(scope, self._keys)
            state = await custody.load_state(scope, recording_id)
        report = await custody.verify_recording(state, self._buckets, config)
        async for txn in self._db.attempts():
            async with txn as conn:
                scope = TenantScope(conn, tenant_id)
                await audit.record(
                    scope,
                    at=self._clock(),
                    actor="operator",
                    action="recording.verify_custody",
                    target=recording_id,
                    details={"ok": report.ok, "findings": len(report.findings)},
                )
        return report

    async def get(self, principal: Principal, recording_id: str) -> RecordingInfo:
        async with self._db.transaction() as conn:
            scope = TenantScope(conn, principal.tenant_id)
            await _own_recording(scope, principal, recording_id)
            return await recording_info(scope, recording_id)

    async def operator_view_url(self, tenant_id: str, recording_id: str, seq: int) -> ViewUrl:
        """A short-lived GET URL for one verified segment, for an operator at the CLI."""

        async def exists(scope: TenantScope) -> None:
            if await scope.one(recordings, recordings.c.id == recording_id) is None:
                raise NotFound("no such recording in this tenant")

        return await self.mint_view_url(
            tenant_id, recording_id, seq, actor="operator", authorize=exists
        )

    async def mint_view_url(
        self,
        tenant_id: str,
        recording_id: str,
        seq: int,
        *,
        actor: str,
        authorize: Callable[[TenantScope], Awaitable[None]],
    ) -> ViewUrl:
        """Sign a GET for one verified segment and audit it: `authorize` and the checks in
        one transaction, the signature with none open, the audit entry in a second, which
        commits before the URL is handed out."""
        async for txn in self._db.attempts():
            async with txn as conn:
                scope = TenantScope(conn, tenant_id)
                await authorize(scope)
                segment = await _segment(scope, recording_id, seq)
                if segment.state != VERIFIED:
                    raise Conflict(f"segment {seq} has not been verified in the bucket yet")
                config = await storage_config.load(scope, self._keys)
        url = await self._buckets.presign_get(config, segment.object_key, ttl=self._view_ttl)
        now = self._clock()
        async for txn in self._db.attempts():
            async with txn as conn:
                await audit.record(
                    TenantScope(conn, tenant_id),
                    at=now,
                    actor=actor,
                    action="segment.view_url",
                    target=segment.object_key,
                    details={"ttl": self._view_ttl, "recording": recording_id, "seq": seq},
                )
        return ViewUrl(url, now + timedelta(seconds=self._view_ttl))

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
            **record,
        )
        return await _segment(scope, recording.id, seq)

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


def _actor(principal: Principal) -> str:
    return f"{principal.kind}:{principal.subject}"


async def _own_recording(scope: TenantScope, principal: Principal, recording_id: str) -> Row[Any]:
    """The recording, if the calling device made it; otherwise it does not exist for them."""
    recording = await scope.one(recordings, recordings.c.id == recording_id)
    if recording is None or recording.device_id != principal.subject:
        raise NotFound("no such recording")
    return recording


async def _segment(scope: TenantScope, recording_id: str, seq: int) -> Row[Any]:
    segment = await scope.one(
        segments, segments.c.recording_id == recording_id, segments.c.seq == seq
    )
    if segment is None:
        raise NotFound(f"segment {seq} was never declared: ask for an upload grant first")
    return segment


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


async def recording_info(scope: TenantScope, recording_id: str) -> RecordingInfo:
    recording = await scope.one(recordings, recordings.c.id == recording_id)
    if recording is None:
        raise NotFound("no such recording")
    grant_counts: dict[str, int] = dict(
        (
            await scope.execute(
                select(upload_grants.c.segment_id, func.count())
                .where(upload_grants.c.tenant_id == scope.tenant_id)
                .join(segments, segments.c.id == upload_grants.c.segment_id)
                .where(segments.c.recording_id == recording_id)
                .group_by(upload_grants.c.segment_id)
            )
        ).all()
    )
    rows = await scope.all(
        segments, segments.c.recording_id == recording_id, order_by=[segments.c.seq]
    )
    return RecordingInfo(
        recording_id=recording.id,
        user_id=recording.user_id,
        device_id=recording.device_id,
        state=recording.state,
        started_at=format_timestamp(recording.started_at),
        finished_at=format_timestamp(recording.finished_at) if recording.finished_at else None,
        segments=[
            SegmentInfo(
                seq=r.seq,
                key=r.object_key,
                state=r.state,
                size=r.size,
                sha256=r.sha256,
                started_at=format_timestamp(r.started_at),
                duration_ms=r.duration_ms,
                grants=int(grant_counts.get(r.id, 0)),
                record_hash=r.record_hash,
            )
            for r in rows
        ],
        gaps=[
            GapInfo(
                seqs=[int(x) for x in json.loads(g.seqs)],
                reason=g.reason,
                reported_at=format_timestamp(g.reported_at),
                from_=format_timestamp(g.gap_from) if g.gap_from is not None else None,
                to=format_timestamp(g.gap_to) if g.gap_to is not None else None,
            )
            for g in await scope.all(
                recording_gaps,
                recording_gaps.c.recording_id == recording_id,
                order_by=[recording_gaps.c.reported_at],
            )
        ],
    )
