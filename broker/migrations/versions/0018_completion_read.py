"""what a completion reads, as one call in a transaction of its own (PostgreSQL)

`bucketreel_completion_read(tenant, device, recording, seq)` declares the tenant for
row-level security (0017's `bucketreel_declare_tenant`) and reads, in one statement, the calling device's key, its
revocation and its person, and — each as its table's whole row, NULL when there is none —
the recording if this device made it, its segment `seq`, and the tenant's storage
configuration. The broker calls it outside an explicit transaction (one round trip where
BEGIN with the declaration, the read and COMMIT were three), then checks the object with
`HeadObject` and records the verification in a transaction of its own, as before. Whole
rows (the tables' row types) follow the tables when a later migration adds a column. It runs
with the caller's rights, so row-level security still applies. SQLite gets nothing here.

Revision ID: 0018
Revises: 0017
"""

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

CREATE = """
CREATE FUNCTION bucketreel_completion_read(
    p_tenant varchar, p_device varchar, p_recording varchar, p_seq integer
)
RETURNS TABLE (
    device_public_key varchar, revoked_at timestamptz, device_user_id varchar,
    recording recordings, segment segments, storage storage_configs
)
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM bucketreel_declare_tenant(p_tenant);
    RETURN QUERY
    SELECT d.public_key::varchar, d.revoked_at, d.user_id::varchar, r, s, c
    FROM devices d
    LEFT JOIN recordings r
        ON r.tenant_id = d.tenant_id AND r.id = p_recording AND r.device_id = d.id
    LEFT JOIN segments s
        ON s.tenant_id = r.tenant_id AND s.recording_id = r.id AND s.seq = p_seq
    LEFT JOIN storage_configs c ON c.tenant_id = d.tenant_id
    WHERE d.tenant_id = p_tenant AND d.id = p_device;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(CREATE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION bucketreel_completion_read(varchar, varchar, varchar, integer)")
