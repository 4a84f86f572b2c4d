"""the tenant admin's console: people's state, invitations, fleet codes, the tenant's zone

`users.state`: "active", "invited" (an admin invited the person, who has not yet set a
password; the invitation is a `mfa_challenges` row of kind "invite": single use, expiring)
or "deactivated" (signs in no more; sessions and devices ended at once).
`users.last_sign_in_at`: the last full sign-in (password and second factor).
`users.mfa_reset_at`: an admin reset the person's 2FA; the person re-enrols at the next
sign-in and is told then (cleared once enrolled).
`enrollment_codes.max_uses`/`uses`: a code enrolls up to `max_uses` devices of its person
(1: one-time); `revoked_at`: an admin withdrew it; `label`: what the admin called it.
`tenants.time_zone`: the IANA zone the tenant's pages cut days in (null: the viewer's
browser zone, else UTC).

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# Plain ALTER TABLE ... ADD/DROP COLUMN on both databases (SQLite 3.35+): no table is rebuilt,
# so their foreign keys and row-level security stay as they are.
COLUMNS = (
    ("users", sa.Column("state", sa.String(length=12), nullable=False, server_default="active")),
    ("users", sa.Column("last_sign_in_at", sa.DateTime(timezone=True), nullable=True)),
    ("users", sa.Column("mfa_reset_at", sa.DateTime(timezone=True), nullable=True)),
    ("enrollment_codes", sa.Column("max_uses", sa.Integer(), nullable=False, server_default="1")),
    ("enrollment_codes", sa.Column("uses", sa.Integer(), nullable=False, server_default="0")),
    ("enrollment_codes", sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True)),
    ("enrollment_codes", sa.Column("label", sa.String(length=200), nullable=True)),
    ("tenants", sa.Column("time_zone", sa.String(length=64), nullable=True)),
)


def upgrade() -> None:
    for table, column in COLUMNS:
        op.add_column(table, column)
    # Codes used before this migration were one-time and are spent.
    op.execute("UPDATE enrollment_codes SET uses = 1 WHERE used_at IS NOT NULL")


def downgrade() -> None:
    for table, column in reversed(COLUMNS):
        op.drop_column(table, column.name)
