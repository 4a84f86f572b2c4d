"""SQLite: each statement in one hop to aiosqlite's thread, not four.

SQLAlchemy's aiosqlite adapter makes a cursor, executes, fetches and closes it as four calls,
each a trip through aiosqlite's queue to its thread and back through the event loop. A
writer holds SQLite's write lock across all of them, so every hop lengthens the time the
other writers queue. This cursor runs the four as one function in that thread: the same
sqlite3 calls in the same order on the same connection, one wake-up of the event loop.
Results are fetched whole (as the adapter did: no server-side cursors here).
"""

from __future__ import annotations

import collections
import sqlite3
from threading import Thread
from typing import Any

from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_only

_Result = tuple[Any, int, int | None, list[Any]]


def _run(
    connection: Any, operation: str, parameters: Any, many: bool
) -> _Result:
    """In aiosqlite's thread: the statement on its sqlite3 connection, every row fetched."""
    conn: sqlite3.Connection = connection._conn
    cursor = conn.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


class OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    __slots__ = ("_result_description", "_result_lastrowid", "_result_rowcount", "_size")
    _awaitable_cursor_close = False

    def __init__(self, adapt_connection: Any) -> None:  # no cursor made here: `_run` does
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._result_description: Any = None
        self._result_rowcount = -1
        self._result_lastrowid: int | None = None
        self._size = 1

    @property
    def description(self) -> Any:
        return self._result_description

    @property
    def rowcount(self) -> int:
        return self._result_rowcount

    @property
    def lastrowid(self) -> int:
        return self._result_lastrowid  # type: ignore[return-value]

    @property
    def arraysize(self) -> int:
        return self._size

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._size = value

    def close(self) -> None:
        self._rows.clear()

    async def _async_soft_close(self) -> None:
        return None

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        try:
            await_only(self._hop(operation, parameters, many=False))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        try:
            await_only(self._hop(operation, seq_of_parameters, many=True))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    async def _hop(self, operation: Any, parameters: Any, *, many: bool) -> None:
        async with self._adapt_connection._execute_mutex:
            result: _Result = await self._connection._execute(
                _run, self._connection, operation, parameters, many
            )
        self._result_description, self._result_rowcount, self._result_lastrowid, rows = result
        self._rows = collections.deque(rows)


class OneHopConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneHopCursor


class OneHopDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """SQLAlchemy's aiosqlite DBAPI, handing out `OneHopConnection`s."""

    def connect(self, *arg: Any, **kw: Any) -> OneHopConnection:
        creator_fn = kw.pop("async_creator_fn", None)
        if creator_fn:
            connection = creator_fn(*arg, **kw)
        else:
            connection = self.aiosqlite.connect(*arg, **kw)
            # as SQLAlchemy does: the connection's thread must not keep the process alive
            thread = connection if isinstance(connection, Thread) else connection._thread
            thread.daemon = True
        return OneHopConnection(self, await_only(connection))


def dbapi() -> OneHopDBAPI:
    import aiosqlite

    return OneHopDBAPI(aiosqlite, sqlite3)
