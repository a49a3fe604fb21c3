"""The one writer of status changes. Every transition of a request goes through here: the
state machine checks it (state.py), and the new status and the tx_events row that logs it are
written in the caller's DB transaction, by `apply` for a request loaded through the ORM, or by
`step` then `log` for the bulk paths (repository/bulk.py writes the status column of those in
the same statement as the other columns of the round, from each Transition's `after`).

A later writer of something per status change (the outbox) goes in `apply` and `log` only;
the metrics of each change are recorded here too (telemetry.py, issue 18).
"""

from collections.abc import Sequence
from typing import cast

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.clock import utcnow
from chainflow.core.types import TxId
from chainflow.domain.transactions.models import DetailValue, Transaction, TxEventRow
from chainflow.domain.transactions.rows import Transition, created_row, event_row
from chainflow.domain.transactions.state import TxEvent, TxStatus, transition
from chainflow.domain.transactions.telemetry import record_stages, record_transition

_EVENTS = cast(Table, TxEventRow.__table__)


def step(
    tx_id: TxId, current: TxStatus, event: TxEvent, *, chain_id: int, **detail: DetailValue
) -> Transition:
    """Where `event` moves a request of `chain_id` in `current` status, and when (raises
    InvalidTransition); nothing is written until the Transition is applied or logged. It is
    counted in the metrics once the caller's unit of work commits."""
    after = transition(current, event)
    record_transition(chain_id, current.value, after.value)  # metrics (issue 18)
    return Transition(tx_id, current, after, event, utcnow(), detail)


def apply(
    session: AsyncSession, tx: Transaction, event: TxEvent, **detail: DetailValue
) -> TxStatus:
    """Move `tx` (an ORM row) by `event` and add the event row; raises InvalidTransition."""
    moved = step(tx.id, tx.status, event, chain_id=tx.chain_id, **detail)
    record_stages(tx, (tx.status, moved.after), at=moved.at)  # metrics (issue 18)
    tx.status, tx.updated_at = moved.after, moved.at
    session.add(TxEventRow(**event_row(moved)))
    return moved.after


async def log(session: AsyncSession, transitions: Sequence[Transition]) -> None:
    """Write the event rows of transitions whose status the caller writes in bulk, in one
    statement."""
    if transitions:
        await session.execute(insert(_EVENTS), [event_row(t) for t in transitions])


def record_created(session: AsyncSession, tx: Transaction) -> None:
    """Log the creation of a request loaded through the ORM (no from-status)."""
    session.add(TxEventRow(**created_row(tx.id, tx.status, tx.created_at)))
    record_transition(tx.chain_id, None, tx.status.value)  # metrics (issue 18)
