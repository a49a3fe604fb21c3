"""chain tracker lease

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 00:12:00.896449
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import chainflow.infra.db.types

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("chains", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tracker_owner", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("tracker_lease_until", chainflow.infra.db.types.UtcDateTime(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("chains", schema=None) as batch_op:
        batch_op.drop_column("tracker_lease_until")
        batch_op.drop_column("tracker_owner")
