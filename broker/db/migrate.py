"""Apply the versioned migrations (Alembic) to the configured database."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from broker.errors import BrokerError

if TYPE_CHECKING:
    from broker.sealing import ChainKeys

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(connection: Connection, *, audit_keys: ChainKeys | None = None) -> Config:
    """`audit_keys`: migration 0011 MACs older entries with them."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    config.attributes["audit_keys"] = audit_keys
    return config


class MigrationRefused(BrokerError):
    """A migration found data it must not change on its own (the message says which rows);
    it changed nothing, and the database stays at the version before it."""


async def upgrade(engine: AsyncEngine, *, audit_keys: ChainKeys | None = None) -> None:
    """Bring the schema to the newest version; a no-op when it is already there.
    `audit_keys` are the broker's, for the migration that MACs older audit entries.

    Errors say which step failed, never the URL (which may carry a password): the database
    could not be opened; or a migration failed (rolled back); or one refused the data.
    """
    try:
        conn = await engine.connect()
    except (OSError, DBAPIError) as exc:
        raise BrokerError(f"cannot open the database: {_reason(exc)}") from None
    try:
        async with conn.begin():
            await conn.run_sync(
                lambda sync_conn: command.upgrade(
                    alembic_config(sync_conn, audit_keys=audit_keys), "head"
                )
            )
    except (OSError, DBAPIError) as exc:
        raise BrokerError(
            f"migrating the database failed, and was rolled back: {_reason(exc)}"
        ) from None
    finally:
        await conn.close()


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "orig", None) or exc
    return f"{type(reason).__name__}: {reason}"


async def current_revision(engine: AsyncEngine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda sync_conn: MigrationContext.configure(sync_conn).get_current_revision()
        )


@functools.cache
def _scripts() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config)


def head_revision() -> str | None:
    """The newest migration this code ships (the scripts are read once per process)."""
    return _scripts().get_current_head()


def is_behind(revision: str | None) -> bool:
    """True when a database at `revision` lacks migrations this code ships: never migrated,
    or at an older one. A revision this code does not know is newer (a later release
    migrated the database during a rolling upgrade): not behind."""
    if revision is None:
        return True
    known = {script.revision for script in _scripts().walk_revisions()}
    return revision in known and revision != head_revision()
