"""Failed-login limits, kept in the database: a wall per (account, client), a slowdown per
account, and a wall per client address.

Each failed password or code adds a row per key it counts against; keys are HMACs (of the
tenant and email, of the client address, of both: the address itself is never stored). A
`LimitKey` is one of:

* **hard** — refused with 429 and `Retry-After` while the key has `limit` failures within
  the last `window` seconds; the oldest of them leaving the window releases it. Used per
  (account, client address) (`BUCKETREEL_LOGIN_MAX_FAILURES`, 5), per (account, known
  browser) for a browser that signed in to the account before (the same limit), and per
  client address across accounts (`BUCKETREEL_LOGIN_CLIENT_MAX_FAILURES`, 50).
* **slow** — per account, from everywhere. Past `limit` failures in the window, each further
  attempt waits `2 ** (failures - limit)` seconds after the newest failure, at most
  `ACCOUNT_DELAY_CAP` (60 s): 429 with a small `Retry-After`. This was a wall (five wrong
  passwords from anywhere locked the account for 15 minutes, its owner included); now a
  stranger can keep the account slowed to about one guess a minute, never locked.
* **counted** — per account again, for a browser holding the account's known-device cookie
  (`broker.auth.known_device`): its failures are recorded against the account, but the
  account's slowdown does not hold it back, so the owner's correct password from a browser
  that signed in before reaches the code step during an attack.

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

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from broker.auth.secrets import token_hash
from broker.db.schema import login_failures
from broker.errors import RateLimited
from broker.settings import Secret

ACCOUNT_DELAY_CAP = 60  # seconds: the longest wait the account-wide slowdown imposes
Mode = Literal["hard", "slow", "counted"]


@dataclass(frozen=True, slots=True)
class LimitKey:
    key_hash: str
    limit: int
    mode: Mode = "hard"

    @property
    def lock_id(self) -> int:
        """A signed 64-bit advisory-lock number for this key (PostgreSQL)."""
        return int.from_bytes(bytes.fromhex(self.key_hash[:16]), "big", signed=True)


@dataclass(frozen=True, slots=True)
class Attempt:
    """An attempt counted before it was judged: its rows in `login_failures`."""

    row_ids: tuple[int, ...]


def slowdown(failures: int, limit: int) -> int:
    """Seconds an account with `failures` in the window makes the next attempt wait after
    its newest failure (0 below the limit)."""
    if failures < limit:
        return 0
    return min(ACCOUNT_DELAY_CAP, int(2 ** min(failures - limit, 16)))


def _ref(tenant: str, email: str) -> str:
    return tenant.strip().lower() + "\x00" + email.strip().lower()


class LoginLimiter:
    def __init__(
        self, *, hmac_key: Secret, window: int, account_limit: int, client_limit: int
    ) -> None:
        self._hmac_key = hmac_key
        self._window = timedelta(seconds=window)
        self._account_limit = account_limit
        self._client_limit = client_limit

    @property
    def account_limit(self) -> int:
        return self._account_limit

    @property
    def window_seconds(self) -> int:
        return int(self._window.total_seconds())

    def account(self, tenant: str, email: str, *, known: bool = False) -> LimitKey:
        """The account from everywhere: slowed (or, from a known browser, only counted)."""
        return LimitKey(
            token_hash(self._hmac_key, "limit-account", _ref(tenant, email)),
            self._account_limit,
            "counted" if known else "slow",
        )

    def account_client(
        self, tenant: str, email: str, client: str, *, known: str | None = None
    ) -> LimitKey:
        """The account from one client address, or from one known browser (`known`: its
        cookie's id): the hard limit."""
        source = f"browser:{known}" if known else f"address:{client}"
        ref = _ref(tenant, email) + "\x00" + source
        return LimitKey(token_hash(self._hmac_key, "limit-pair", ref), self._account_limit)

    def client(self, address: str) -> LimitKey:
        return LimitKey(token_hash(self._hmac_key, "limit-client", address), self._client_limit)

    async def check(self, conn: AsyncConnection, keys: list[LimitKey], now: datetime) -> None:
        """Raise RateLimited when any key holds the attempt back. Until `conn`'s transaction
        ends, no other transaction can count or record for these keys."""
        await _lock(conn, keys)
        since = now - self._window
        for key in keys:
            if key.mode == "counted":
                continue
            count, oldest, newest = (
                await conn.execute(
                    select(
                        func.count(), func.min(login_failures.c.at), func.max(login_failures.c.at)
                    ).where(login_failures.c.key_hash == key.key_hash, login_failures.c.at > since)
                )
            ).one()
            if key.mode == "slow":
                wait = slowdown(count, key.limit)
                if wait and newest is not None and now < newest + timedelta(seconds=wait):
                    retry = (newest + timedelta(seconds=wait) - now).total_seconds()
                    raise RateLimited(
                        "this account had many failed sign-ins: wait a moment and try again",
                        retry_after=math.ceil(retry),
                    )
            elif count >= key.limit:
                # The oldest failure in the window leaves it first (a safe upper bound when
                # there are more than `limit` of them).
                retry = (oldest + self._window - now).total_seconds() if oldest else 1
                raise RateLimited(
                    "too many failed attempts; try again later", retry_after=int(retry) + 1
                )

    async def count(self, conn: AsyncConnection, key: LimitKey, now: datetime) -> int:
        """The key's failures within the window."""
        return int(
            (
                await conn.execute(
                    select(func.count()).where(
                        login_failures.c.key_hash == key.key_hash,
                        login_failures.c.at > now - self._window,
                    )
                )
            ).scalar_one()
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
        """A full, good login clears that source's failures for the account (`key`: the
        account and client, or the account and known browser). Never the account's own, so
        the owner signing in does not hand a stranger a fresh set of fast guesses."""
        await conn.execute(delete(login_failures).where(login_failures.c.key_hash == key.key_hash))


async def _lock(conn: AsyncConnection, keys: list[LimitKey]) -> None:
    """Serialize the transactions that count or record for `keys` (PostgreSQL; in key order,
    so two transactions never wait for each other's second lock). Released at commit."""
    if conn.dialect.name != "postgresql":
        return  # SQLite: the broker's transactions begin IMMEDIATE, one writer at a time
    for lock_id in sorted({key.lock_id for key in keys}):
        await conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})
