"""fewer index writes per status change and per event (issue 17)

Revision ID: 0010_pg_hot
Revises: 0009_obs
Create Date: 2026-12-06 10:00:00.000000

events: no index on event_id (no query looks it up), cursor unique only where set (an
unsequenced row needs no entry), (tx_id, tx_seq) instead of tx_id. transactions: one
(chain_id, status, wallet_id) index instead of (chain_id, status) and (chain_id, wallet_id,
status). tx_attempts: fillfactor 50 on PostgreSQL, so its updates can be HOT.
docs/performance.md has the measurements.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_pg_hot"
down_revision: str | None = "0009_obs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SET = sa.text("cursor IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_constraint("uq_events_event_id", type_="unique")
        batch_op.drop_constraint("uq_events_cursor", type_="unique")
        batch_op.drop_index("ix_events_tx_id")
    op.create_index(
        "uq_events_cursor",
        "events",
        ["cursor"],
        unique=True,
        postgresql_where=_SET,
        sqlite_where=_SET,
    )
    op.create_index("ix_events_tx_seq", "events", ["tx_id", "tx_seq"])
    op.drop_index("ix_transactions_lane_status", table_name="transactions")
    op.drop_index("ix_transactions_chain_status", table_name="transactions")
    op.create_index(
        "ix_transactions_chain_status", "transactions", ["chain_id", "status", "wallet_id"]
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE tx_attempts SET (fillfactor = 50)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE tx_attempts RESET (fillfactor)")
    op.drop_index("ix_transactions_chain_status", table_name="transactions")
    op.create_index("ix_transactions_chain_status", "transactions", ["chain_id", "status"])
    op.create_index(
        "ix_transactions_lane_status", "transactions", ["chain_id", "wallet_id", "status"]
    )
    op.drop_index("ix_events_tx_seq", table_name="events")
    op.drop_index("uq_events_cursor", table_name="events")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_tx_id", ["tx_id"])
        batch_op.create_unique_constraint("uq_events_cursor", ["cursor"])
        batch_op.create_unique_constraint("uq_events_event_id", ["event_id"])
