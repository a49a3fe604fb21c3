"""events: an INSERT writes 2 index entries, not 4 (issue 17)

Every events row is inserted unsequenced (cursor and tx_seq NULL), then updated once by the
sequencer, never HOT (it sets cursor and tx_seq, both indexed): each of its indexes gets an
entry per write. Two of them only serve sequenced rows: the pruner's `created_at` (its query
keeps to `cursor IS NOT NULL`) and the sequencer's and pruner's `(tx_id, tx_seq)` (a max of
tx_seq, or `later.tx_seq > tx_seq`: never a NULL tx_seq). Both become partial, so the INSERT
writes no entry in them, only the UPDATE does: 8 -> 6 index entries per event, ~10 per
confirmed transaction. docs/performance.md item 32 has the measurements.

Revision ID: 0013_events_lean
Revises: 0012_wh_hot
Create Date: 2026-12-06 21:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_events_lean"
down_revision: str | None = "0012_wh_hot"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PARTIAL = {
    "ix_events_created_at": (["created_at"], sa.text("cursor IS NOT NULL")),
    "ix_events_tx_seq": (["tx_id", "tx_seq"], sa.text("tx_seq IS NOT NULL")),
}


def upgrade() -> None:
    for name, (columns, where) in _PARTIAL.items():
        op.drop_index(name, table_name="events")
        op.create_index(name, "events", columns, postgresql_where=where, sqlite_where=where)


def downgrade() -> None:
    for name, (columns, _) in _PARTIAL.items():
        op.drop_index(name, table_name="events")
        op.create_index(name, "events", columns)
