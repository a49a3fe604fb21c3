"""Apply a state-machine event to a transaction row and append its event, in one DB transaction."""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.clock import utcnow
from chainflow.domain.transactions.models import Transaction, TxEventRow
from chainflow.domain.transactions.state import TxEvent, TxStatus, transition


def apply(session: AsyncSession, tx: Transaction, event: TxEvent, **detail: Any) -> TxStatus:
    """Move `tx` by `event` (raises InvalidTransition) and log the step with `detail`."""
    before = tx.status
    tx.status = transition(before, event)
    tx.updated_at = utcnow()
    session.add(
        TxEventRow(
            tx_id=tx.id,
            from_status=before.value,
            to_status=tx.status.value,
            at=tx.updated_at,
            detail={"event": event.value, **detail} if detail or event else None,
        )
    )
    return tx.status


def record_created(session: AsyncSession, tx: Transaction) -> TxEventRow:
    """Log the creation of a request (no from-status)."""
    event = TxEventRow(tx_id=tx.id, from_status=None, to_status=tx.status.value, at=tx.created_at)
    session.add(event)
    return event
