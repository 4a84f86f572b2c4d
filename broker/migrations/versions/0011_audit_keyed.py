"""audit entries MACed under a key that is not in the database

Each audit entry gets `mac` (HMAC-SHA256 of its chain hash, its tenant and position) and
`mac_key` (the version of the audit key, derived from `BUCKETREEL_MASTER_KEYS`). Entries
written before this migration are MACed here, tenant by tenant, once their hash chain
verifies, when the migration runs with the broker's keys (the broker and its `migrate` and
`admin` commands hand them over). Without keys, or on a tenant whose chain is broken
already, they stay unkeyed and `admin audit-verify` names each of them.

Revision ID: 0011
Revises: 0010
"""

import logging

import sqlalchemy as sa
from alembic import op

from broker.audit import log as audit

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

log = logging.getLogger("broker.migrations")


def upgrade() -> None:
    # Plain ALTER TABLE on both databases (SQLite adds and, since 3.35, drops a column in
    # place): no table is rebuilt, so nothing else about it changes.
    op.add_column("audit_log", sa.Column("mac", sa.String(length=64), nullable=True))
    op.add_column("audit_log", sa.Column("mac_key", sa.String(length=16), nullable=True))
    config = op.get_context().config
    keys = config.attributes.get("audit_keys") if config is not None else None
    if keys is None:
        log.warning("migration 0011: no audit keys given; entries written before stay unkeyed")
        return
    sealed = audit.seal_unkeyed(op.get_bind(), keys)
    if sealed:
        log.warning(
            "migration 0011: %d audit entries of %d tenants, written before it, are MACed now "
            "(their hash chains verified)", sum(sealed.values()), len(sealed),
        )


def downgrade() -> None:
    op.drop_column("audit_log", "mac_key")
    op.drop_column("audit_log", "mac")
