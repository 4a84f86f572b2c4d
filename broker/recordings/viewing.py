"""What people (managers and admins) read: employees, recordings, short-lived view URLs.

Every method authorizes through `broker.recordings.access` in the same transaction as the read.
"""

from __future__ import annotations

from typing import Any

from broker.audit import log as audit
from broker.auth.tokens import Principal
from broker.clock import Clock
from broker.db.database import Database
from broker.db.schema import recordings
from broker.db.scope import TenantScope
from broker.errors import NotFound
from broker.recordings import access
from broker.recordings.service import RecordingService, ViewUrl, recording_info
from shared.wire import RecordingInfo, format_timestamp


class ViewingService:
    def __init__(self, *, db: Database, recordings: RecordingService, clock: Clock) -> None:
        self._db = db
        self._recordings = recordings
        self._clock = clock

    async def employees(self, principal: Principal) -> list[dict[str, Any]]:
        async with self._db.transaction() as conn:
            rows = await access.visible_users(TenantScope(conn, principal.tenant_id), principal)
        return [{"user_id": r.id, "email": r.email, "role": r.role} for r in rows]

    async def recordings_of(self, principal: Principal, user_id: str) -> list[dict[str, Any]]:
        async with self._db.transaction() as conn:
            scope = TenantScope(conn, principal.tenant_id)
            await access.require_visible(scope, principal, user_id)
            rows = await scope.all(
                recordings, recordings.c.user_id == user_id, order_by=[recordings.c.started_at]
            )
        return [
            {
                "recording_id": r.id,
                "device_id": r.device_id,
                "state": r.state,
                "started_at": format_timestamp(r.started_at),
                "finished_at": format_timestamp(r.finished_at) if r.finished_at else None,
            }
            for r in rows
        ]

    async def recording(self, principal: Principal, recording_id: str) -> RecordingInfo:
        async with self._db.transaction() as conn:
            scope = TenantScope(conn, principal.tenant_id)
            await self._authorize(scope, principal, recording_id)
            return await recording_info(scope, recording_id)

    async def view_url(self, principal: Principal, recording_id: str, seq: int) -> ViewUrl:
        async for txn in self._db.attempts():
            async with txn as conn:
                scope = TenantScope(conn, principal.tenant_id)
                await audit.lock_chain(scope)  # first (README's lock order)
                await self._authorize(scope, principal, recording_id)
                result = await self._recordings.mint_view_url(
                    scope, recording_id, seq, actor=f"user:{principal.user_id}"
                )
        return result

    async def _authorize(self, scope: TenantScope, principal: Principal, recording_id: str) -> None:
        recording = await scope.one(recordings, recordings.c.id == recording_id)
        if recording is None:
            raise NotFound("no such recording")
        try:
            await access.require_visible(scope, principal, recording.user_id)
        except NotFound:
            raise NotFound("no such recording") from None
