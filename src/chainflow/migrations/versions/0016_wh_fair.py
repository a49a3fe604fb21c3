"""webhook deliveries: an endpoint's due deliveries indexed, for a claim per endpoint

ix_webhook_deliveries_endpoint_due (endpoint_id, next_attempt_at, event_pk, only pending
deliveries): the claim takes each endpoint's oldest due deliveries up to its share, not the
oldest over every endpoint; with the latter, endpoints with a backlog of due deliveries filled
every claim and a healthy endpoint's deliveries waited minutes behind them. A finished delivery
has no entry in it (partial, like ix_webhook_deliveries_due).

Revision ID: 0016_wh_fair
Revises: 0014_log_lean
Create Date: 2026-12-07 23:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_wh_fair"
down_revision: str | None = "0014_log_lean"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLE = "webhook_deliveries"
_INDEX = "ix_webhook_deliveries_endpoint_due"
_PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.create_index(
        _INDEX,
        _TABLE,
        ["endpoint_id", "next_attempt_at", "event_pk"],
        postgresql_where=_PENDING,
        sqlite_where=_PENDING,
    )


def downgrade() -> None:
    op.drop_index(_INDEX, table_name=_TABLE)
