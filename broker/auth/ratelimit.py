"""Failed-login limits, per account and per client address, kept in the database.

Each failed password or code adds a row keyed by an HMAC (of the tenant and email, or of the
client address: the address itself is never stored). A login is refused with 429 and
`Retry-After` while a key has `limit` failures within the last `window` seconds; the oldest of
them leaving the window releases it. The state is in the database, so it holds across
replicas.

No overshoot under concurrency: counting and recording are one atomic step per key. On
PostgreSQL the transaction takes a transaction-scoped advisory lock per key before it counts
(SQLite's broker transactions are BEGIN IMMEDIATE: serialized already), so a burst of
parallel guesses cannot all pass one count before any of them is recorded. A password
check is slow (argon2id) and runs outside any transaction, so `reserve` records the attempt
as a failure *before* the password is checked and `release` removes it once the password
proved right: N parallel attempts are N rows at once, and at most `limit` get checked.

Fails closed: the check runs in the login's own transaction, so when the database cannot be
reached no login proceeds (the caller maps that to 503), and a failure is recorded in the same
transaction as the refusal it causes; an attempt whose process dies mid-check stays counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from broker.auth.secrets import token_hash
from broker.db.schema import login_failures
from broker.errors import RateLimited
from broker.settings import Secret


@dataclass(frozen=True, slots=True)
class LimitKey:
    key_hash: str
    limit: int

    @property
    def lock_id(self) -> int:
        """A signed 64-bit advisory-lock number for this key (PostgreSQL)."""
        return int.from_bytes(bytes.fromhex(self.key_hash[:16]), "big", signed=True)


@dataclass(frozen=True, slots=True)
class Attempt:
    """An attempt counted before it was judged: its rows in `login_failures`."""

    row_ids: tuple[int, ...]


class LoginLimiter:
    def __init__(
        self, *, hmac_key: Secret, window: int, account_limit: int, client_limit: int
    ) -> None:
        self._hmac_key = hmac_key
        self._window = timedelta(seconds=window)
        self._account_limit = account_limit
        self._client_limit = client_limit

    def account(self, tenant: str, email: str) -> LimitKey:
        ref = tenant.strip().lower() + "\x00" + email.strip().lower()
        return LimitKey(token_hash(self._hmac_key, "limit-account", ref), self._account_limit)

    def client(self, address: str) -> LimitKey:
        return LimitKey(token_hash(self._hmac_key, "limit-client", address), self._client_limit)

    async def check(self, conn: AsyncConnection, keys: list[LimitKey], now: datetime) -> None:
        """Raise RateLimited when any key is over its limit. Until `conn`'s transaction ends,
        no other transaction can count or record for these keys (see the module's docstring)."""
        await _lock(conn, keys)
        since = now - self._window
        for key in keys:
            count, oldest = (
                await conn.execute(
                    select(func.count(), func.min(login_failures.c.at)).where(
                        login_failures.c.key_hash == key.key_hash, login_failures.c.at > since
                    )
                )
            ).one()
            if count >= key.limit:
                # The oldest failure in the window leaves it first (a safe upper bound when
                # there are more than `limit` of them).
                retry = (oldest + self._window - now).total_seconds() if oldest else 1
                raise RateLimited(
                    "too many failed attempts; try again later", retry_after=int(retry) + 1
                )

    async def failed(self, conn: AsyncConnection, keys: list[LimitKey], now: datetime) -> None:
        """Record a failure for each key (after `check` in the same transaction)."""
        await self._record(conn, keys, now)

    async def reserve(self, conn: AsyncConnection, keys: list[LimitKey], now: datetime) -> Attempt:
        """`check`, then count this attempt as a failure until `release` says otherwise.
        Commit `conn`'s transaction before the slow check, so parallel attempts see it."""
        await self.check(conn, keys, now)
        return Attempt(await self._record(conn, keys, now))

    async def release(self, conn: AsyncConnection, attempt: Attempt) -> None:
        """The attempt succeeded: it is not a failure after all."""
        if attempt.row_ids:
            await conn.execute(
                delete(login_failures).where(login_failures.c.id.in_(attempt.row_ids))
            )

    async def _record(
        self, conn: AsyncConnection, keys: list[LimitKey], now: datetime
    ) -> tuple[int, ...]:
        ids = []
        for key in keys:
            row_id = (
                await conn.execute(
                    insert(login_failures)
                    .values(key_hash=key.key_hash, at=now)
                    .returning(login_failures.c.id)
                )
            ).scalar_one()
            ids.append(int(row_id))
        # Rows that left the window count no more; broker.db.housekeeping deletes them.
        return tuple(ids)

    async def succeeded(self, conn: AsyncConnection, key: LimitKey) -> None:
        """A full, good login clears the account's failures (never the client's)."""
        await conn.execute(delete(login_failures).where(login_failures.c.key_hash == key.key_hash))


async def _lock(conn: AsyncConnection, keys: list[LimitKey]) -> None:
    """Serialize the transactions that count or record for `keys` (PostgreSQL; in key order,
    so two transactions never wait for each other's second lock). Released at commit."""
    if conn.dialect.name != "postgresql":
        return  # SQLite: the broker's transactions begin IMMEDIATE, one writer at a time
    for lock_id in sorted({key.lock_id for key in keys}):
        await conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})
