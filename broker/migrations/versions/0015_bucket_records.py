"""the bucket stands on its own: the outbox of records the broker writes to the bucket

`bucket_outbox` holds, per tenant, each record the broker still has to write beside the
recordings (`broker.bucket`): a device's key record (at enrollment), a recording's manifest
(finished or closed), an audit anchor (the chain's head). Rows are added in the same
transaction as their event and delivered later, with no transaction open; delivered rows stay
(`delivered_at`) as the record of what was written. Row-level security like 0007.

What existed before is queued too, so an existing deployment's bucket gets the records of
its devices and finished recordings (their segments carry no metadata: they were uploaded
before it existed; the manifest lists their signed custody records all the same).

Revision ID: 0015
Revises: 0014
"""

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from broker.db import walls

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# Tenant tables this migration adds, walled like 0007's (test_row_level_security.py reads it).
WALLED = {"bucket_outbox": "tenant_id"}


def upgrade() -> None:
    op.create_table(
        "bucket_outbox",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("ref", sa.String(length=100), nullable=False),
        sa.Column("object_key", sa.String(length=1024), nullable=True),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_bucket_outbox_tenant_id_tenants"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_bucket_outbox"),
        sa.UniqueConstraint("tenant_id", "kind", "ref", name="uq_bucket_outbox_tenant_id"),
    )
    op.create_index(
        "ix_bucket_outbox_next_attempt_at", "bucket_outbox", ["next_attempt_at"]
    )
    _queue_what_exists()
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in WALLED.items():
        for statement in walls.put_up(table, column):
            op.execute(statement)


def _queue_what_exists() -> None:
    bind = op.get_bind()
    now = datetime.now(UTC)
    if bind.dialect.name == "sqlite":  # stored naive, read back as UTC (broker.db.schema)
        now = now.replace(tzinfo=None)
    found = [
        ("device", row.id, row.tenant_id)
        for row in bind.execute(sa.text("SELECT id, tenant_id FROM devices"))
    ] + [
        ("manifest", row.id, row.tenant_id)
        for row in bind.execute(
            sa.text("SELECT id, tenant_id FROM recordings WHERE state = 'finished'")
        )
    ]
    outbox = sa.table(
        "bucket_outbox", sa.column("id"), sa.column("tenant_id"), sa.column("kind"),
        sa.column("ref"), sa.column("created_at"), sa.column("next_attempt_at"),
        sa.column("attempts"),
    )
    if found:
        op.bulk_insert(outbox, [
            {"id": str(uuid.uuid4()), "tenant_id": tenant_id, "kind": kind, "ref": ref,
             "created_at": now, "next_attempt_at": now, "attempts": 0}
            for kind, ref, tenant_id in found
        ])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in WALLED:
            for statement in walls.take_down(table):
                op.execute(statement)
    op.drop_index("ix_bucket_outbox_next_attempt_at", table_name="bucket_outbox")
    op.drop_table("bucket_outbox")
