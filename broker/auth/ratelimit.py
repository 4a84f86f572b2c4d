"""Failed-login limits, per account and per client address, kept in the database.

Each failed password or code adds a row keyed by an HMAC (of the tenant and email, or of the
client address: the address itself is never stored). A login is refused with 429 and
`Retry-After` while a key has `limit` failures within the last `window` seconds; the oldest of
them leaving the window releases it. The state is in the database, so it holds across
replicas.

Fails closed: the check runs in the login's own transaction, so when the database cannot be
reached no login proceeds (the caller maps that to 503), and a failure is recorded in the same
transaction as the refusal it causes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from broker.auth.secrets import token_hash
from broker.db.schema import login_failures
from broker.errors import RateLimited
from broker.settings import Secret


@dataclass(frozen=True, slots=True)
class LimitKey:
    key_hash: str
    limit: int


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
        """Raise RateLimited when any key is over its limit."""
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
        await conn.execute(
            insert(login_failures), [{"key_hash": k.key_hash, "at": now} for k in keys]
        )
        # Rows that left the window mean nothing any more.
        await conn.execute(
            delete(login_failures).where(
                login_failures.c.key_hash.in_([k.key_hash for k in keys]),
                login_failures.c.at <= now - self._window,
            )
        )

    async def succeeded(self, conn: AsyncConnection, key: LimitKey) -> None:
        """A full, good login clears the account's failures (never the client's)."""
        await conn.execute(delete(login_failures).where(login_failures.c.key_hash == key.key_hash))
