"""the recording policy's quality level, and each segment's codec (issue 19)

`device_policies.quality`: a named level (shared.wire.QualityLevel: high, standard, compact,
av1), NULL where the tenant leaves it to each agent. `segments.codec`: the codec
the agent declared for the segment (RFC 6381, e.g. avc1.640028 or av01.0.08M.08), so a
player can ask the browser whether it plays it; NULL for an older agent's (H.264).

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ALTER TABLE on both databases, never a batch rebuild (see 0009): the broker's
    # SQLite enforces foreign keys, and rebuilding `segments` would drop a referenced table
    op.add_column("device_policies", sa.Column("quality", sa.String(length=20), nullable=True))
    op.add_column("segments", sa.Column("codec", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("segments", "codec")
    op.drop_column("device_policies", "quality")
