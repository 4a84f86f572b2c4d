"""the audit chain linked in one round trip under its lock (PostgreSQL)

`bucketreel_audit_chain_head(lock_class, tenant)` takes the tenant's chain lock (an
advisory transaction lock) and then reads the chain's newest entry. It is VOLATILE, so its
second query runs on a snapshot taken after the lock was granted and sees the entry the
previous holder committed; one statement can't do both, since a statement's snapshot is
taken before it starts waiting. `broker.audit.log` links a transaction's entries with it as
the transaction's last statements: one round trip fewer while the lock is held.

`bucketreel_audit_link(lock_class, tenant, expected_seq, expected_hash, entries)` does the
same and then, if the head is the one the broker expected, inserts the entries it hashed
and MACed against it (JSON) in the same call and answers `linked`; else it inserts nothing
and answers the head, for the broker to link against (it holds the lock by then). The
broker expects the head its own last link left (`broker.audit.log`), so while one process
writes a tenant a link is one round trip and the lock is held from it to the commit.

Both run with the caller's rights, so row-level security still applies. SQLite has no such
lock (its writers hold the database's write lock) and gets nothing here.

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


CREATE_LINK = """
CREATE FUNCTION bucketreel_audit_link(
    lock_class integer, tenant varchar, expected_seq integer, expected_hash varchar,
    entries jsonb
)
RETURNS TABLE (linked boolean, seq integer, hash varchar)
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    head_seq integer;
    head_hash varchar;
BEGIN
    PERFORM pg_advisory_xact_lock(lock_class, hashtext(tenant));
    SELECT a.seq, a.hash INTO head_seq, head_hash
        FROM audit_log a WHERE a.tenant_id = tenant ORDER BY a.seq DESC LIMIT 1;
    IF NOT FOUND THEN
        head_seq := 0;
        head_hash := repeat('0', 64);
    END IF;
    IF head_seq = expected_seq AND head_hash = expected_hash THEN
        INSERT INTO audit_log
            (tenant_id, seq, at, actor, action, target, details, prev_hash, hash, mac, mac_key)
        SELECT e.tenant_id, e.seq, e.at, e.actor, e.action, e.target, e.details, e.prev_hash,
               e.hash, e.mac, e.mac_key
        FROM jsonb_to_recordset(entries) AS e(
            tenant_id varchar, seq integer, at timestamptz, actor varchar, action varchar,
            target varchar, details text, prev_hash varchar, hash varchar, mac varchar,
            mac_key varchar
        );
        RETURN QUERY SELECT true, head_seq, head_hash;
    ELSE
        RETURN QUERY SELECT false, head_seq, head_hash;
    END IF;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(CREATE)
        op.execute(CREATE_LINK)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION bucketreel_audit_link(integer, varchar, integer, varchar, jsonb)"
        )
        op.execute("DROP FUNCTION bucketreel_audit_chain_head(integer, varchar)")
