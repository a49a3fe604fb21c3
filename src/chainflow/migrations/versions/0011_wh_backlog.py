"""webhook backlog index: pending deliveries per endpoint, oldest first (issue 16)

The metrics' backlog query counts each endpoint's pending deliveries and finds the oldest:
with this index both are read from the index alone (PostgreSQL, 1 M deliveries of which 50 k
pending: 146 ms before, see docs/performance.md).

Revision ID: 0011_wh_backlog
Revises: 0010_pg_hot
Create Date: 2026-12-06 09:40:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011_wh_backlog"
down_revision: str | None = "0010_pg_hot"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_webhook_deliveries_backlog",
        "webhook_deliveries",
        ["status", "endpoint_id", "created_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_backlog", table_name="webhook_deliveries")
