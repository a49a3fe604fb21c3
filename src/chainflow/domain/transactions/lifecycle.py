"""Apply a state-machine event to a transaction row and append its event, in one DB transaction."""

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.clock import utcnow
from chainflow.domain.transactions.models import Transaction, TxEventRow
from chainflow.domain.transactions.state import TxEvent, TxStatus, transition
from chainflow.domain.transactions.telemetry import record_stages, record_transition


def apply(session: AsyncSession, tx: Transaction, event: TxEvent, **detail: Any) -> TxStatus:
    """Move `tx` by `event` (raises InvalidTransition) and log the step with `detail`."""
    status, row = step(tx, event, **detail)
    record_stages(tx, (tx.status, status), at=row["at"])  # metrics (issue 18)
    tx.status, tx.updated_at = status, row["at"]
    session.add(TxEventRow(**row))
    return status


def step(tx: Transaction, event: TxEvent, **detail: Any) -> tuple[TxStatus, dict[str, Any]]:
    """Where `event` moves `tx` (raises InvalidTransition) and the values of the event row
    that logs it, without changing `tx`: for callers that write many rows in bulk."""
    return step_row(tx.id, tx.status, event, chain_id=tx.chain_id, **detail)


def step_row(
    tx_id: uuid.UUID, current: TxStatus, event: TxEvent, *, chain_id: int, **detail: Any
) -> tuple[TxStatus, dict[str, Any]]:
    """`step` for a request known only by its id and status (a Core read). Every status
    change goes through here: it is counted in the metrics once its unit of work commits."""
    status = transition(current, event)
    record_transition(chain_id, current.value, status.value)  # metrics (issue 18)
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
    record_transition(tx.chain_id, None, tx.status.value)  # metrics (issue 18)
    return event
