"""the audit chain's head, read under its lock in one round trip (PostgreSQL)

`bucketreel_audit_chain_head(lock_class, tenant)` takes the tenant's chain lock (an
advisory transaction lock) and then reads the chain's newest entry. It is VOLATILE, so its
second query runs on a snapshot taken after the lock was granted and sees the entry the
previous holder committed; one statement can't do both, since a statement's snapshot is
taken before it starts waiting. `broker.audit.log` links a transaction's entries with it as
the transaction's last statements: one round trip fewer while the lock is held. It runs
with the caller's rights, so row-level security still applies. SQLite has no such lock
(its writers hold the database's write lock) and gets nothing here.

Revision ID: 0016
Revises: 0015
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

CREATE = """
CREATE FUNCTION bucketreel_audit_chain_head(lock_class integer, tenant varchar)
RETURNS TABLE (seq integer, hash varchar)
LANGUAGE sql VOLATILE
AS $$
    SELECT pg_advisory_xact_lock($1, hashtext($2));
    SELECT a.seq, a.hash FROM audit_log a WHERE a.tenant_id = $2 ORDER BY a.seq DESC LIMIT 1;
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(CREATE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION bucketreel_audit_chain_head(integer, varchar)")
