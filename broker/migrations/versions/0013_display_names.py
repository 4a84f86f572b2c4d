"""people's display names

`users.display_name`: the name a person goes by (set by the operator with `admin
create-user --name`, by an admin on the invitation or the person's page), shown beside the
email wherever people are listed; null: the email alone.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# A plain ALTER TABLE ... ADD/DROP COLUMN (as 0012): no table is rebuilt, so its foreign keys
# and row-level security stay as they are.
COLUMN = sa.Column("display_name", sa.String(length=200), nullable=True)


def upgrade() -> None:
    op.add_column("users", COLUMN)


def downgrade() -> None:
    op.drop_column("users", COLUMN.name)
