"""Housekeeping: rows that can never matter again are deleted, so no table grows for ever.

Each device refresh (about every 15 minutes while an agent runs) and each person's refresh
adds a token row; every login adds a challenge; every enrollment code a row. Nothing deleted
them: a device running for a year left some 10 000 rows behind. A row is deleted here only
once nothing can tell it from no row at all:

* refresh tokens (devices and people), login challenges and enrollment codes past their
  `expires_at`: presented then, each is refused whether its row exists or not, and a used
  token's reuse is detected only while it has not expired (`broker.auth`), so detection
  loses nothing;
* failed-login rows older than the counting window (`broker.auth.ratelimit`): they no longer
  count.

Recordings, segments, upload grants, gaps and the audit log are never touched: they are the
record. The sweep spans tenants (it declares none, like migrations), runs at start and then
every `INTERVAL` seconds in each broker process (two replicas sweeping at once delete the
same rows; harmless), and a failed sweep is logged and tried again at the next interval.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from sqlalchemy import Table, delete
from sqlalchemy.exc import SQLAlchemyError

from broker.clock import Clock
from broker.db.database import Database
from broker.db.schema import (
    device_refresh_tokens,
    enrollment_codes,
    login_failures,
    mfa_challenges,
    user_refresh_tokens,
)
from broker.errors import stop_if_cancelled

log = logging.getLogger(__name__)

INTERVAL = 3600.0  # seconds between sweeps
EXPIRING: tuple[Table, ...] = (
    device_refresh_tokens,
    user_refresh_tokens,
    mfa_challenges,
    enrollment_codes,
)


async def sweep(db: Database, now: datetime, *, login_window: int) -> dict[str, int]:
    """Delete what can never matter again (see the module's docstring); rows deleted per table."""
    deleted: dict[str, int] = {}
    async with db.transaction() as conn:
        for table in EXPIRING:
            result = await conn.execute(delete(table).where(table.c.expires_at <= now))
            deleted[table.name] = int(result.rowcount)
        result = await conn.execute(
            delete(login_failures).where(
                login_failures.c.at <= now - timedelta(seconds=login_window)
            )
        )
        deleted[login_failures.name] = int(result.rowcount)
    return deleted


async def sweep_forever(db: Database, clock: Clock, *, login_window: int) -> None:
    """Sweep at once and then every `INTERVAL` seconds until cancelled (`broker.app` runs it
    for the app's lifetime)."""
    while True:
        try:
            deleted = await sweep(db, clock(), login_window=login_window)
        except (SQLAlchemyError, OSError) as exc:
            stop_if_cancelled()
            log.warning("housekeeping: the sweep failed (%s); trying again in %.0f s",
                        type(exc).__name__, INTERVAL)
        else:
            if any(deleted.values()):
                log.info("housekeeping: deleted %s", ", ".join(
                    f"{count} {table}" for table, count in deleted.items() if count))
        await asyncio.sleep(INTERVAL)
