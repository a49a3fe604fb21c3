"""lane paused reason (a lane waiting for its signer, issue 20)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 03:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("wallet_chains", schema=None) as batch_op:
        batch_op.add_column(sa.Column("paused_reason", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("wallet_chains", schema=None) as batch_op:
        batch_op.drop_column("paused_reason")
