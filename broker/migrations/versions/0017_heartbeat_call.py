"""a device's heartbeat as one call in a transaction of its own (PostgreSQL)

`bucketreel_declare_tenant(tenant)` declares the tenant for row-level security
(`bucketreel.tenant`, local to the transaction), refused when the transaction is declared for
another: what `broker.db.scope` does, for the functions that declare their own tenant.
`bucketreel_heartbeat(tenant, device, owner, seen, status, every)` declares it so and stores the heartbeat on the device's own row while
it is enrolled, answering the tenant's policy keys (NULL where unset); no row when the
device is not enrolled (or is revoked). The broker calls it outside an explicit transaction,
so the call is a transaction of its own: one round trip where BEGIN with the declaration,
the UPDATE and COMMIT were three. It runs with the caller's rights, so row-level security
still applies. SQLite gets nothing here (the broker runs the same UPDATE there).

Revision ID: 0017
Revises: 0016
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

DECLARE_TENANT = """
CREATE FUNCTION bucketreel_declare_tenant(p_tenant varchar)
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    IF coalesce(current_setting('bucketreel.tenant', true), '') NOT IN ('', p_tenant) THEN
        RAISE EXCEPTION 'this transaction is declared for another tenant';
    END IF;
    PERFORM set_config('bucketreel.tenant', p_tenant, true);
END
$$
"""

CREATE = """
CREATE FUNCTION bucketreel_heartbeat(
    p_tenant varchar, p_device varchar, p_owner varchar, p_seen timestamptz,
    p_status varchar, p_every integer
)
RETURNS TABLE (
    policy_fps double precision, policy_segment_seconds double precision,
    policy_idle_seconds integer, policy_quality varchar
)
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM bucketreel_declare_tenant(p_tenant);
    RETURN QUERY
    UPDATE devices d
    SET last_seen_at = p_seen, last_status = p_status, heartbeat_interval = p_every
    WHERE d.tenant_id = p_tenant AND d.id = p_device AND d.user_id = p_owner
        AND d.revoked_at IS NULL
    RETURNING
        (SELECT p.fps FROM device_policies p WHERE p.tenant_id = p_tenant),
        (SELECT p.segment_seconds FROM device_policies p WHERE p.tenant_id = p_tenant),
        (SELECT p.idle_seconds FROM device_policies p WHERE p.tenant_id = p_tenant),
        (SELECT p.quality::varchar FROM device_policies p WHERE p.tenant_id = p_tenant);
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(DECLARE_TENANT)
        op.execute(CREATE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION bucketreel_heartbeat(varchar, varchar, varchar, timestamptz, varchar,"
            " integer)"
        )
        op.execute("DROP FUNCTION bucketreel_declare_tenant(varchar)")
