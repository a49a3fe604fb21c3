"""All SQL of the events table but the sequencer's: appending in the caller's unit of work,
reading sequenced events, pruning."""

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, TypedDict, cast

from sqlalchemy import Table, delete, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from chainflow.core.clock import utcnow
from chainflow.core.types import ChainId, TxId, WalletId
from chainflow.domain.events.models import EventRow
from chainflow.domain.events.wakeups import appended
from chainflow.infra.db.bulk import insert_rows

EVENTS = cast(Table, EventRow.__table__)


class NewEvent(TypedDict):
    """An events row as appended: unsequenced (no cursor, no tx_seq yet)."""

    event_id: uuid.UUID
    type: str
    tx_id: TxId | None
    wallet_id: WalletId | None
    chain_id: ChainId | None
    data: dict[str, Any]
    created_at: datetime


def new_event(
    type: str,  # the envelope's name
    *,
    data: dict[str, Any],
    tx_id: TxId | None = None,
    wallet_id: WalletId | None = None,
    chain_id: ChainId | None = None,
    at: datetime | None = None,
    event_id: uuid.UUID | None = None,
) -> NewEvent:
    """The row of one event, for `append_many`; `event_id` a new uuid4 (core.ids.uuid4s for
    many), made here when not given."""
    return {
        "event_id": event_id or uuid.uuid4(),
        "type": type,
        "tx_id": tx_id,
        "wallet_id": wallet_id,
        "chain_id": chain_id,
        "data": data,
        "created_at": at or utcnow(),
    }


def append(
    session: AsyncSession,
    type: str,  # the envelope's name
    *,
    data: dict[str, Any],
    tx_id: TxId | None = None,
    wallet_id: WalletId | None = None,
    chain_id: ChainId | None = None,
    at: datetime | None = None,
) -> EventRow:
    """Add one event to the caller's unit of work; it is written at the next flush."""
    row = EventRow(
        **new_event(type, data=data, tx_id=tx_id, wallet_id=wallet_id, chain_id=chain_id, at=at)
    )
    session.add(row)
    appended.ring_on_commit()
    return row


async def append_many(session: AsyncSession | AsyncConnection, events: Sequence[NewEvent]) -> None:
    """Write many events (from `new_event`) in one INSERT, in the order given."""
    if events:
        await insert_rows(session, EVENTS, events)
        appended.ring_on_commit()


async def prune(
    session: AsyncSession,
    *,
    before: datetime,
    limit: int = 1000,
    final_types: Collection[str] = (),
) -> int:
    """Delete up to `limit` sequenced events created before `before`; return how many.

    Kept whatever their age:
    - the event with the largest cursor: the sequencer numbers on from it, so cursors never
      start again at 1 under a reader that resumes after an old one;
    - each transaction's latest event unless its type is in `final_types` (its transaction
      reached a status that takes no more events): the sequencer gives the transaction's next
      event its `tx_seq` from it, so tx_seq never starts again at 1 for a request that waited
      longer than the retention (issue 16). One row per unfinished transaction, at most.
    """
    c = EVENTS.c
    later = EVENTS.alias("later")
    newest = select(func.max(c.cursor)).scalar_subquery()
    # `tx_seq IS NOT NULL` is implied by the comparison; said so that every planner sees the
    # partial (tx_id, tx_seq) index fits (and `cursor IS NOT NULL` below, the created_at one).
    superseded = exists().where(
        later.c.tx_id == c.tx_id, later.c.tx_seq.is_not(None), later.c.tx_seq > c.tx_seq
    )
    doomed = (
        select(c.id)
        .where(
            c.created_at < before,
            c.cursor.is_not(None),
            c.cursor < newest,
            or_(c.tx_id.is_(None), c.type.in_(list(final_types)), superseded),
        )
        .order_by(c.id)
        .limit(limit)
    )
    result = await session.execute(delete(EVENTS).where(c.id.in_(doomed)))
    return int(getattr(result, "rowcount", 0) or 0)
