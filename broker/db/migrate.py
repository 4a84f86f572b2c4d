"""Apply the versioned migrations (Alembic) to the configured database."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from broker.errors import BrokerError

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


async def upgrade(engine: AsyncEngine) -> None:
    """Bring the schema to the newest version; a no-op when it is already there."""
    try:
        async with engine.begin() as conn:
            await conn.run_sync(
                lambda sync_conn: command.upgrade(alembic_config(sync_conn), "head")
            )
    except (OSError, DBAPIError) as exc:
        # The message names the failure, never the URL (which may carry a password).
        reason = getattr(exc, "orig", None) or exc
        raise BrokerError(f"cannot open the database: {type(reason).__name__}: {reason}") from None


async def current_revision(engine: AsyncEngine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda sync_conn: MigrationContext.configure(sync_conn).get_current_revision()
        )
