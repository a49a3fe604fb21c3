"""Apply a state-machine event to a transaction row and append its event, in one DB transaction."""

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.clock import utcnow
from chainflow.domain.transactions.models import Transaction, TxEventRow
from chainflow.domain.transactions.state import TxEvent, TxStatus, transition


def apply(session: AsyncSession, tx: Transaction, event: TxEvent, **detail: Any) -> TxStatus:
    """Move `tx` by `event` (raises InvalidTransition) and log the step with `detail`."""
    status, row = step(tx, event, **detail)
    tx.status, tx.updated_at = status, row["at"]
    session.add(TxEventRow(**row))
    return status


def step(tx: Transaction, event: TxEvent, **detail: Any) -> tuple[TxStatus, dict[str, Any]]:
    """Where `event` moves `tx` (raises InvalidTransition) and the values of the event row
    that logs it, without changing `tx`: for callers that write many rows in bulk."""
    return step_row(tx.id, tx.status, event, **detail)


def step_row(
    tx_id: uuid.UUID, current: TxStatus, event: TxEvent, **detail: Any
) -> tuple[TxStatus, dict[str, Any]]:
    """`step` for a request known only by its id and status (a Core read)."""
    status = transition(current, event)
    return status, {
        "tx_id": tx_id,
        "from_status": current.value,
        "to_status": status.value,
        "at": utcnow(),
        "detail": {"event": event.value, **detail},
    }


def record_created(session: AsyncSession, tx: Transaction) -> TxEventRow:
    """Log the creation of a request (no from-status)."""
    event = TxEventRow(tx_id=tx.id, from_status=None, to_status=tx.status.value, at=tx.created_at)
    session.add(event)
    return event
