"""Reading recordings: their info, short-lived view URLs (audited), custody re-checks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from broker.audit import log as audit
from broker.bucket import outbox
from broker.db.schema import recordings
from broker.db.scope import TenantScope
from broker.errors import Conflict, NotFound
from broker.identity import Principal
from broker.recordings import custody
from broker.recordings.common import (
    VERIFIED,
    RecordingParts,
    own_recording,
    recording_info,
    segment_row,
)
from broker.storage import config as storage_config
from shared.wire import RecordingInfo


@dataclass(frozen=True, slots=True)
class ViewUrl:
    url: str
    expires_at: datetime


class Reads(RecordingParts):
    async def verify_custody(self, tenant_id: str, recording_id: str) -> custody.VerifyReport:
        """Re-check a recording's chain of custody against the bucket (operator command)."""
        async with self._db.transaction() as conn:
            scope = TenantScope(conn, tenant_id)
            config = await storage_config.load(scope, self._keys, self._configs)
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
            await own_recording(scope, principal, recording_id)
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
                segment = await segment_row(scope, recording_id, seq)
                if segment.state != VERIFIED:
                    raise Conflict(f"segment {seq} has not been verified in the bucket yet")
                config = await storage_config.load(scope, self._keys, self._configs)
        url = await self._buckets.presign_get(config, segment.object_key, ttl=self._view_ttl)
        now = self._clock()
        async for txn in self._db.attempts():
            async with txn as conn:
                scope = TenantScope(conn, tenant_id)
                await audit.record(
                    scope,
                    at=now,
                    actor=actor,
                    action="segment.view_url",
                    target=segment.object_key,
                    details={"ttl": self._view_ttl, "recording": recording_id, "seq": seq},
                )
                await outbox.enqueue_anchor(scope, now)  # who watched: anchored at once
        if self._wake is not None:
            self._wake.set()
        return ViewUrl(url, now + timedelta(seconds=self._view_ttl))
