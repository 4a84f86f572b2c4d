"""The one data-access layer for tenant data.

A `TenantScope` is made from a verified principal's tenant (never from a path or a body) and
adds `tenant_id = :tenant` to every query it runs, so a query cannot forget it.

On PostgreSQL it also declares its tenant for the transaction (`bucketreel.tenant`, local to
the transaction) before its first query; the row-level security policies of migration 0007
then show and accept only that tenant's rows, whatever a query forgets: a second wall.
Work that spans tenants (migrations, the operator's key rotation, lookups made before the
tenant is known) runs without a scope and so declares none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVarTuple, overload

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Executable,
    Row,
    Table,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.selectable import TypedReturnsRows

_Ts = TypeVarTuple("_Ts")
Params = Mapping[str, Any] | Sequence[Mapping[str, Any]]

TENANT_SETTING = "bucketreel.tenant"
# `conn.info`: the tenant the open transaction declared with its BEGIN (`broker.db.pgbegin`,
# set and cleared by `Database`), when it did.
DECLARED_INFO = "bucketreel.declared_tenant"

# Sets the tenant only if the transaction has declared none or this same one (no row else).
_DECLARE = text(
    f"SELECT set_config('{TENANT_SETTING}', :tenant, true)"
    f" WHERE coalesce(current_setting('{TENANT_SETTING}', true), '') IN ('', :tenant)"
)


class TenantConflict(RuntimeError):
    """One transaction was about to be declared for two tenants: a bug, never user input."""


class TenantScope:
    def __init__(self, conn: AsyncConnection, tenant_id: str) -> None:
        if not tenant_id:
            raise ValueError("a tenant scope needs a tenant")
        self.conn = conn
        self.tenant_id = tenant_id
        self._declared_in: tuple[object, object] | None = None

    async def _declare(self) -> None:
        """Declare the tenant once per transaction (and again after a savepoint, whose
        rollback would undo it). Nothing to do on SQLite, which has no row-level security."""
        if self.conn.dialect.name != "postgresql" or self._declared_in == self._transaction():
            return
        declared = self.conn.info.get(DECLARED_INFO)
        if declared is not None:  # with the BEGIN, before any statement: no savepoint undoes it
            if declared != self.tenant_id:
                raise TenantConflict(
                    f"this transaction is declared for another tenant than {self.tenant_id}"
                )
            self._declared_in = self._transaction()
            return
        result = await self.conn.execute(_DECLARE, {"tenant": self.tenant_id})
        if result.first() is None:
            raise TenantConflict(
                f"this transaction is declared for another tenant than {self.tenant_id}"
            )
        self._declared_in = self._transaction()

    def _transaction(self) -> tuple[object, object]:
        sync = self.conn.sync_connection
        if sync is None:
            return (None, None)
        return (sync.get_transaction(), sync.get_nested_transaction())

    @overload
    async def execute(
        self, statement: TypedReturnsRows[*_Ts], params: Params | None = None
    ) -> CursorResult[*_Ts]: ...

    @overload
    async def execute(
        self, statement: Executable, params: Params | None = None
    ) -> CursorResult[*tuple[Any, ...]]: ...

    async def execute(
        self, statement: Executable, params: Params | None = None
    ) -> CursorResult[*tuple[Any, ...]]:
        """Run a statement of the caller's own in this tenant's declared transaction.
        The caller filters by tenant itself; on PostgreSQL the wall catches what it forgets.
        `params` binds a statement built once with `bindparam`s (its compiled form is then
        reused: no statement is rebuilt per call); a list of them runs it for each."""
        await self._declare()
        return await self.conn.execute(statement, params)

    def _where(self, table: Table, criteria: Sequence[ColumnElement[bool]]) -> list[Any]:
        return [table.c.tenant_id == self.tenant_id, *criteria]

    async def one(self, table: Table, *criteria: ColumnElement[bool]) -> Row[Any] | None:
        result = await self.execute(select(table).where(*self._where(table, criteria)))
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
        return list((await self.execute(query)).all())

    async def count(self, table: Table, *criteria: ColumnElement[bool]) -> int:
        query = select(func.count()).select_from(table).where(*self._where(table, criteria))
        return int((await self.execute(query)).scalar_one())

    async def insert(self, table: Table, **values: Any) -> None:
        await self.execute(insert(table).values(tenant_id=self.tenant_id, **values))

    async def update(self, table: Table, *criteria: ColumnElement[bool], **values: Any) -> int:
        """Update matching rows of this tenant; returns how many rows changed."""
        result = await self.execute(
            update(table).where(*self._where(table, criteria)).values(**values)
        )
        return int(result.rowcount)
