"""All SQL of the events table but the sequencer's: appending in the caller's unit of work,
reading sequenced events, pruning."""

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypedDict, cast

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from chainflow.core.clock import utcnow
from chainflow.core.types import ChainId, TxId, WalletId
from chainflow.domain.events.models import EventRow

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
) -> NewEvent:
    """The row of one event, for `append_many`."""
    return {
        "event_id": uuid.uuid4(),
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
    return row


async def append_many(session: AsyncSession | AsyncConnection, events: Sequence[NewEvent]) -> None:
    """Write many events (from `new_event`) in one INSERT, in the order given."""
    if events:
        await session.execute(insert(EVENTS), list(events))
