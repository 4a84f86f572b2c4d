"""Alembic environment: runs on the connection `broker.db.migrate` hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from broker.db.schema import metadata

MIGRATION_LOCK_ID = 0x62756374  # "buct": serialises replicas migrating one PostgreSQL at once

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `bucketreel-broker migrate`, which opens the database")

if connection.dialect.name == "postgresql":
    connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
