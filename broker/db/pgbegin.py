"""PostgreSQL: a transaction's BEGIN and its tenant declaration in one round trip.

Row-level security needs each tenant transaction to declare its tenant (`bucketreel.tenant`,
local to the transaction: `broker.db.scope`). Sent as a statement of its own, that is a round
trip and a pass through SQLAlchemy per transaction. When the tenant is known before the
transaction starts (`Database.attempts(tenant=…)`, `read(tenant=…)`), the connection sends
`BEGIN; SELECT set_config('bucketreel.tenant', '<tenant>', true)` as one simple query
instead, before the transaction's first statement: the declaration is in force for every
statement of the transaction, exactly as the separate one was, and ends with it.

The connection class is SQLAlchemy's asyncpg adapter with only `_start_transaction`
changed; SQLAlchemy's own calls (commit, rollback, savepoints as SQL) work unchanged. The
tenant is a verified token's, and is sent only when it is a canonical UUID (never any other
text in a literal); anything else is declared the old way, as a bound parameter.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.dialects.postgresql.asyncpg import (
    AsyncAdapt_asyncpg_connection,
    AsyncAdapt_asyncpg_dbapi,
)
from sqlalchemy.util.concurrency import await_only

TENANT_SETTING = "bucketreel.tenant"


def literal_tenant(tenant_id: str) -> str | None:
    """`tenant_id` when it may be written into SQL as it is (a canonical UUID), else None."""
    try:
        canonical = str(uuid.UUID(tenant_id))
    except ValueError:
        return None
    return canonical if canonical == tenant_id else None


class _Begun:
    """The open transaction a combined BEGIN started: SQLAlchemy commits or rolls it back."""

    __slots__ = ("_connection",)

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    async def commit(self) -> None:
        await self._connection.execute("COMMIT")

    async def rollback(self) -> None:
        await self._connection.execute("ROLLBACK")


class DeclaringConnection(AsyncAdapt_asyncpg_connection):
    """asyncpg through SQLAlchemy, whose next BEGIN may carry a tenant declaration."""

    __slots__ = ("declare",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        # The tenant the next transaction declares with its BEGIN (`literal_tenant`'d);
        # `Database` sets it before a transaction's first statement and clears it after.
        self.declare: str | None = None

    async def _start_transaction(self) -> None:
        tenant, self.declare = self.declare, None
        if tenant is None or self.isolation_level == "autocommit" or self.readonly:
            await super()._start_transaction()  # type: ignore[no-untyped-call]
            return
        try:
            await self._connection.execute(  # type: ignore[attr-defined]
                f"BEGIN; SELECT set_config('{TENANT_SETTING}', '{tenant}', true)"
            )
        except Exception as error:
            self._handle_exception(error)
        else:
            self._transaction = _Begun(self._connection)  # type: ignore[assignment]


class DeclaringDBAPI(AsyncAdapt_asyncpg_dbapi):
    """SQLAlchemy's asyncpg DBAPI, handing out `DeclaringConnection`s."""

    def connect(self, *arg: Any, **kw: Any) -> DeclaringConnection:
        creator_fn = kw.pop("async_creator_fn", self.asyncpg.connect)
        cache_size = kw.pop("prepared_statement_cache_size", 100)
        name_func = kw.pop("prepared_statement_name_func", None)
        return await_only(
            DeclaringConnection.create(
                self, creator_fn(*arg, **kw), prepared_statement_cache_size=cache_size,
                prepared_statement_name_func=name_func,
            )
        )


def dbapi() -> DeclaringDBAPI:
    import asyncpg  # type: ignore[import-untyped,unused-ignore]

    return DeclaringDBAPI(asyncpg)  # type: ignore[no-untyped-call]
