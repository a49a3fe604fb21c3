"""The one writer of status changes. Every transition of a request goes through here: the
state machine checks it (state.py), and the new status and the tx_events row that logs it are
written in the caller's DB transaction, by `apply` for a request loaded through the ORM, or by
`step` then `log` for the bulk paths (repository/bulk.py writes the status column of those in
the same statement as the other columns of the round, from each Transition's `after`).

Each change also appends its event to the outbox (domain/events, issue 16) in the same DB
transaction: `transaction.<new status>` (`transaction.reorged` when a receipt vanished), with a
snapshot of the request as of that change. The metrics of each change are recorded here too
(telemetry.py, issue 18).
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Table, inspect
from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.clock import utcnow
from chainflow.core.ids import uuid4s
from chainflow.core.types import TxId
from chainflow.domain import events
from chainflow.domain.transactions.models import DetailValue, Transaction, TxAttempt, TxEventRow
from chainflow.domain.transactions.repository.states import load_states
from chainflow.domain.transactions.rows import Transition, created_row, event_row
from chainflow.domain.transactions.snapshots import (
    Snapshot,
    event_data,
    has_row_layout,
    snapshot,
    snapshot_row,
)
from chainflow.domain.transactions.state import TxEvent, TxStatus, transition
from chainflow.domain.transactions.telemetry import record_stages, record_transition
from chainflow.infra.db.bulk import insert_rows

_EVENTS = cast(Table, TxEventRow.__table__)


def step(
    tx_id: TxId,
    current: TxStatus,
    event: TxEvent,
    at: datetime | None = None,
    /,
    *,
    chain_id: int,
    **detail: DetailValue,
) -> Transition:
    """Where `event` moves a request of `chain_id` in `current` status, and when (`at`, the
    time its row is written with, else now; raises InvalidTransition); nothing is written
    until the Transition is applied or logged. It is counted in the metrics once the caller's
    unit of work commits."""
    after = transition(current, event)
    record_transition(chain_id, current.value, after.value)  # metrics (issue 18)
    return Transition(tx_id, current, after, event, at or utcnow(), detail)


def apply(
    session: AsyncSession, tx: Transaction, event: TxEvent, **detail: DetailValue
) -> TxStatus:
    """Move `tx` (an ORM row) by `event` and add the event row; raises InvalidTransition."""
    moved = step(tx.id, tx.status, event, chain_id=tx.chain_id, **detail)
    record_stages(tx, (tx.status, moved.after), at=moved.at)  # metrics (issue 18)
    tx.status, tx.updated_at = moved.after, moved.at
    session.add(TxEventRow(**event_row(moved)))
    publish(session, tx, moved)
    return moved.after


def publish(session: AsyncSession, tx: Transaction, moved: Transition) -> None:
    """Append the event of `moved` for `tx` as it is now (an ORM row, its changes made)."""
    shown = snapshot(tx, _attempts_of(tx, moved), status=moved.after, updated_at=moved.at)
    events.append(
        session,
        event_type(moved),
        data=event_data(moved, shown),
        tx_id=tx.id,
        wallet_id=tx.wallet_id,
        chain_id=tx.chain_id,
        at=moved.at,
    )


def event_type(moved: Transition) -> str:
    """`transaction.<new status>`, or `transaction.reorged` for a receipt that vanished."""
    if moved.event is TxEvent.RECEIPT_VANISHED:
        return "transaction.reorged"
    return f"transaction.{moved.after.value}"


def _attempts_of(tx: Transaction, moved: Transition) -> list[TxAttempt]:
    if "attempts" not in inspect(tx).unloaded:
        return list(tx.attempts)
    if moved.before is TxStatus.QUEUED:  # attempts are only made by signing it
        return []
    raise RuntimeError("load the attempts of a signed request before moving it")


async def log(
    session: AsyncSession,
    transitions: Sequence[Transition],
    *,
    requests: Sequence[Row[Any]] | None = None,
    attempts: Sequence[Row[Any]] | None = None,
) -> None:
    """Write the event rows and the outbox events of transitions whose status the caller has
    written in bulk (call it after those writes), in two to four statements whatever their
    number. The snapshots show the rows as those writes left them: `requests` and `attempts`
    when the caller's UPDATEs returned them (repository.states), else read back here."""
    if not transitions:
        return
    await insert_rows(session, _EVENTS, [event_row(t) for t in transitions])
    # Core rows are read by position (the same JSON as by name: snapshots.snapshot_row); the
    # rows load_states reads itself are laid out so.
    by_position = has_row_layout(requests or (), attempts or ())
    states = await load_states(
        session, {t.tx_id for t in transitions}, requests=requests, attempts=attempts
    )
    render = snapshot_row if by_position else snapshot
    rows = []
    shown_of: dict[TxId, Snapshot] = {}
    for moved, event_id in zip(transitions, uuid4s(len(transitions)), strict=True):
        tx, attempts = states[moved.tx_id]
        earlier = shown_of.get(moved.tx_id)
        if earlier is None:
            # The row's updated_at, as GET renders it: the round's writer stamped it.
            shown = render(tx, attempts, status=moved.after, updated_at=tx.updated_at)
            shown_of[moved.tx_id] = shown
        else:  # a second change of the round (mined, then confirmed): the same row
            shown = {**earlier, "status": moved.after.value}
        rows.append(
            events.new_event(
                event_type(moved),
                data=event_data(moved, shown),
                tx_id=moved.tx_id,
                wallet_id=tx.wallet_id,
                chain_id=tx.chain_id,
                at=moved.at,
                event_id=event_id,
            )
        )
    await events.append_many(session, rows)


def record_created(session: AsyncSession, tx: Transaction) -> None:
    """Log the creation of a request loaded through the ORM (no from-status)."""
    session.add(TxEventRow(**created_row(tx.id, tx.status, tx.created_at)))
    events.append(
        session,
        f"transaction.{tx.status.value}",
        data={
            "transaction": snapshot(tx, [], status=tx.status, updated_at=tx.created_at),
            "previous_status": None,
        },
        tx_id=tx.id,
        wallet_id=tx.wallet_id,
        chain_id=tx.chain_id,
        at=tx.created_at,
    )
    record_transition(tx.chain_id, None, tx.status.value)  # metrics (issue 18)


def record_replaced(session: AsyncSession, tx: Transaction, attempt: TxAttempt) -> None:
    """Append `transaction.replaced` for a new attempt (fee bump or cancel) of `tx`, signed
    and stored in this unit of work: no status changes, the attempts do."""
    attempts = [*tx.attempts, attempt]
    shown = snapshot(tx, attempts, status=tx.status, updated_at=attempt.created_at)
    events.append(
        session,
        "transaction.replaced",
        data={
            "transaction": shown,
            "previous_status": tx.status.value,
            "attempt": {"kind": attempt.kind.value, "hash": attempt.hash},
        },
        tx_id=tx.id,
        wallet_id=tx.wallet_id,
        chain_id=tx.chain_id,
        at=attempt.created_at,
    )
