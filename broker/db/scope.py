"""The one data-access layer for tenant data.

A `TenantScope` is made from a verified principal's tenant (never from a path or a body) and
adds `tenant_id = :tenant` to every query it runs, so a query cannot forget it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Row, Table, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection


class TenantScope:
    def __init__(self, conn: AsyncConnection, tenant_id: str) -> None:
        if not tenant_id:
            raise ValueError("a tenant scope needs a tenant")
        self.conn = conn
        self.tenant_id = tenant_id

    def _where(self, table: Table, criteria: Sequence[ColumnElement[bool]]) -> list[Any]:
        return [table.c.tenant_id == self.tenant_id, *criteria]

    async def one(self, table: Table, *criteria: ColumnElement[bool]) -> Row[Any] | None:
        result = await self.conn.execute(select(table).where(*self._where(table, criteria)))
        return result.first()

    async def all(
        self,
        table: Table,
        *criteria: ColumnElement[bool],
        order_by: Sequence[Any] = (),
        limit: int | None = None,
    ) -> list[Row[Any]]:
        query = select(table).where(*self._where(table, criteria)).order_by(*order_by)
        if limit is not None:
            query = query.limit(limit)
        return list((await self.conn.execute(query)).all())

    async def count(self, table: Table, *criteria: ColumnElement[bool]) -> int:
        query = select(func.count()).select_from(table).where(*self._where(table, criteria))
        return int((await self.conn.execute(query)).scalar_one())

    async def insert(self, table: Table, **values: Any) -> None:
        await self.conn.execute(insert(table).values(tenant_id=self.tenant_id, **values))

    async def update(self, table: Table, *criteria: ColumnElement[bool], **values: Any) -> int:
        """Update matching rows of this tenant; returns how many rows changed."""
        result = await self.conn.execute(
            update(table).where(*self._where(table, criteria)).values(**values)
        )
        return int(result.rowcount)
