"""The tenant's own settings that its admins change: for now the time zone its pages cut
days in (`broker.web.pages.zone`)."""

from __future__ import annotations

from typing import Any
from zoneinfo import available_timezones

from sqlalchemy import Row, select

from broker.audit import log as audit
from broker.clock import Clock
from broker.db.database import Database
from broker.db.schema import tenants
from broker.db.scope import TenantScope
from broker.errors import InvalidInput, NotFound

MAX_ZONE = 64


def check_zone(name: str | None) -> str | None:
    """An IANA zone name this machine knows, or None (no zone of the tenant's own)."""
    if name is None or name == "":
        return None
    if len(name) > MAX_ZONE or name not in available_timezones():
        raise InvalidInput("time_zone must be an IANA time zone name, such as Europe/Berlin")
    return name


async def _tenant(scope: TenantScope) -> Row[Any] | None:
    return (await scope.execute(select(tenants).where(tenants.c.id == scope.tenant_id))).first()


async def tenant_zone(scope: TenantScope) -> str | None:
    row = await _tenant(scope)
    return row.time_zone if row is not None else None


class Organisation:
    def __init__(self, *, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def describe(self, tenant_id: str) -> dict[str, str | None]:
        async with self._db.transaction() as conn:
            row = await _tenant(TenantScope(conn, tenant_id))
        if row is None:
            raise NotFound("no such tenant")
        return {"name": row.name, "time_zone": row.time_zone}

    async def set_time_zone(
        self, tenant_id: str, name: str | None, *, actor: str
    ) -> dict[str, str | None]:
        """Set (or clear, with None) the zone the tenant's pages cut days in; audited."""
        zone = check_zone(name)
        async for txn in self._db.attempts():
            async with txn as conn:
                scope = TenantScope(conn, tenant_id)
                await audit.lock_chain(scope)  # first (README's lock order)
                before = await tenant_zone(scope)
                await scope.execute(
                    tenants.update().where(tenants.c.id == tenant_id).values(time_zone=zone)
                )
                await audit.record(
                    scope, at=self._clock(), actor=actor, action="tenant.time_zone_set",
                    target=tenant_id, details={"from": before, "to": zone},
                )
        return await self.describe(tenant_id)
