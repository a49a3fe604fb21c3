"""The events table: the transactional outbox every event consumer reads (API, stream,
webhooks). Rows are immutable once sequenced; see docs/events.md."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from chainflow.core.clock import utcnow
from chainflow.core.types import ChainId, TxId, WalletId
from chainflow.infra.db.base import Base
from chainflow.infra.db.types import UtcDateTime

_ID = BigInteger().with_variant(Integer, "sqlite")  # SQLite's rowid alias autoincrements


class EventRow(Base):
    """One event, appended in the unit of work of the change it reports.

    `id` is insertion order, which is not commit order under concurrency; `cursor` is
    assigned by the sequencer (sequencer.py) after commit, gap-free and commit-ordered, and is
    NULL until then. `tx_seq` numbers the events of one transaction 1, 2, 3… in cursor order.
    `tx_id` has no foreign key: events outlive the pruning of their transaction.
    """

    __tablename__ = "events"
    # Every row is written twice, by its INSERT and by the sequencer's UPDATE, which is never
    # HOT (it sets `cursor`, an indexed column), so each index costs an entry per write: only
    # what a query needs is indexed (migration 0010_pg_hot, docs/performance.md). `event_id`
    # has no index: no query looks an event up by it, and it is a random UUID. An index that
    # only sequenced rows need is partial, so the INSERT writes no entry in it (migration
    # 0013_events_lean): 2 entries per INSERT (pk, unsequenced), 4 per UPDATE.
    __table_args__ = (
        # The sequencer's scan: only the (few) unsequenced rows are in this index.
        Index(
            "ix_events_unsequenced",
            "id",
            postgresql_where=text("cursor IS NULL"),
            sqlite_where=text("cursor IS NULL"),
        ),
        # Readers page on it; an unsequenced row (cursor NULL) needs no entry.
        Index(
            "uq_events_cursor",
            "cursor",
            unique=True,
            postgresql_where=text("cursor IS NOT NULL"),
            sqlite_where=text("cursor IS NOT NULL"),
        ),
        # The sequencer's tx_seq (largest of a transaction: one probe) and the pruner's
        # "superseded" check; both read only rows that have a tx_seq.
        Index(
            "ix_events_tx_seq",
            "tx_id",
            "tx_seq",
            postgresql_where=text("tx_seq IS NOT NULL"),
            sqlite_where=text("tx_seq IS NOT NULL"),
        ),
        # The pruner's age bound; it prunes only sequenced rows.
        Index(
            "ix_events_created_at",
            "created_at",
            postgresql_where=text("cursor IS NOT NULL"),
            sqlite_where=text("cursor IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, default=uuid.uuid4)
    type: Mapped[str] = mapped_column(String(64))
    cursor: Mapped[int | None] = mapped_column(BigInteger)
    tx_id: Mapped[TxId | None] = mapped_column(Uuid)
    tx_seq: Mapped[int | None] = mapped_column(Integer)
    wallet_id: Mapped[WalletId | None] = mapped_column(Uuid)
    chain_id: Mapped[ChainId | None] = mapped_column(BigInteger)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
