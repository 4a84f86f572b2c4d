"""What people read: their own recordings and those `broker.access` lets them see, and
short-lived view URLs.

Every method authorizes through `broker.access` in the same transaction as the read
(a view URL is signed after that transaction and audited in the next, before it is handed out).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

from broker import access
from broker.accounts import organisation
from broker.accounts import service as accounts
from broker.audit.query import Receipts
from broker.clock import Clock
from broker.db.database import Database
from broker.db.schema import recordings
from broker.db.scope import TenantScope
from broker.errors import NotFound
from broker.identity import Principal
from broker.recordings import overview
from broker.recordings.service import RecordingService, ViewUrl, recording_info
from shared.wire import RecordingInfo, format_timestamp


@dataclass(frozen=True, slots=True)
class Me:
    email: str
    display_name: str | None
    tenant_zone: str | None


class ViewingService:
    def __init__(self, *, db: Database, recordings: RecordingService, clock: Clock) -> None:
        self._db = db
        self._recordings = recordings
        self._clock = clock

    async def me(self, principal: Principal) -> Me:
        """The signed-in person's own email ("" if the row is gone), the name they go by
        and their tenant's time zone, for the pages' top bar and times."""
        async with self._db.transaction() as conn:
            scope = TenantScope(conn, principal.tenant_id)
            email, name = await accounts.email_and_name_of(scope, principal.user_id)
            return Me(
                email=email, display_name=name,
                tenant_zone=await organisation.tenant_zone(scope),
            )

    async def tenant_zone(self, principal: Principal) -> str | None:
        async with self._db.transaction() as conn:
            return await organisation.tenant_zone(TenantScope(conn, principal.tenant_id))

    async def employees(self, principal: Principal) -> list[dict[str, Any]]:
        async with self._db.transaction() as conn:
            rows = await access.visible_users(TenantScope(conn, principal.tenant_id), principal)
        return [
            {"user_id": r.id, "email": r.email, "role": r.role, "display_name": r.display_name}
            for r in rows
        ]

    async def overview(self, principal: Principal, zone: tzinfo) -> dict[str, Any]:
        """The start page: the caller's own state and the people they may watch, now, with
        the time recorded today in `zone` (`broker.recordings.overview`)."""
        async with self._db.transaction() as conn:
            scope = TenantScope(conn, principal.tenant_id)
            return await overview.overview(scope, principal, self._clock(), zone)

    async def transparency(
        self, principal: Principal, zone: tzinfo
    ) -> tuple[dict[str, Any], Receipts]:
        """The caller's transparency page: who may watch them, their devices, the policy,
        their receipts grouped into viewings."""
        async with self._db.transaction() as conn:
            scope = TenantScope(conn, principal.tenant_id)
            return await overview.transparency(scope, principal, self._clock(), zone)

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
        async def authorize(scope: TenantScope) -> None:
            await self._authorize(scope, principal, recording_id)

        return await self._recordings.mint_view_url(
            principal.tenant_id, recording_id, seq, actor=f"user:{principal.user_id}",
            authorize=authorize,
        )

    async def _authorize(self, scope: TenantScope, principal: Principal, recording_id: str) -> None:
        recording = await scope.one(recordings, recordings.c.id == recording_id)
        if recording is None:
            raise NotFound("no such recording")
        try:
            await access.require_visible(scope, principal, recording.user_id)
        except NotFound:
            raise NotFound("no such recording") from None
