"""How a schedule's run ended: recorded with its reason, announced as a `schedule.run.*` event
in the same DB transaction, and what a run that moved nothing gives back to the budget
(runner.py starts the runs)."""

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.logging import get_logger
from chainflow.core.types import ChainId, WalletId
from chainflow.domain import events
from chainflow.domain.schedules import repository
from chainflow.domain.schedules.models import RunStatus, Schedule, ScheduleRun, ScheduleStatus
from chainflow.domain.transactions.models import Transaction
from chainflow.domain.transactions.state import TxStatus

log = get_logger(__name__)

REASON_MAX = 500


async def finish_runs(
    session: AsyncSession, chain_id: int, *, now: datetime, limit: int = 500
) -> list[ScheduleRun]:
    """Pending runs whose transaction reached a terminal status get their outcome. A run whose
    transaction did not execute (reverted, failed, cancelled, expired) moved no `value` or
    `amount_in`: it is given back to the schedule's budget."""
    finished = []
    for run, tx in await repository.lock_finished(session, chain_id, limit=limit):
        await finish(session, run, tx, now=now)
        finished.append(run)
    await session.flush()
    return finished


async def finish(
    session: AsyncSession, run: ScheduleRun, tx: Transaction, *, now: datetime
) -> None:
    """Record the outcome of a locked pending run whose transaction is terminal."""
    if tx.status is TxStatus.CONFIRMED:
        run.status = RunStatus.SUCCEEDED
    else:
        run.status = RunStatus.FAILED
        run.reason = _failure(tx)
        if run.amount_in:
            schedule = await repository.get(session, run.schedule_id, for_update=True)
            if schedule is not None:
                schedule.spent = max(0, schedule.spent - run.amount_in)
    run.finished_at = now
    announce(session, run, chain_id=tx.chain_id, wallet_id=tx.wallet_id)


def _failure(tx: Transaction) -> str:
    detail = f": {tx.error_code}" if tx.error_code else ""
    if tx.error_message:
        detail += f" ({tx.error_message})"
    return f"transaction {tx.status.value}{detail}"[:REASON_MAX]


def record_run(
    session: AsyncSession,
    schedule: Schedule,
    occurrence: datetime,
    status: RunStatus,
    reason: str,
) -> ScheduleRun:
    run = ScheduleRun(
        id=uuid.uuid4(),
        schedule_id=schedule.id,
        scheduled_for=occurrence,
        status=status,
        reason=reason[:REASON_MAX],
        created_at=schedule.updated_at,
        finished_at=schedule.updated_at,
    )
    session.add(run)
    announce(session, run, chain_id=schedule.chain_id, wallet_id=schedule.wallet_id)
    return run


def announce(
    session: AsyncSession,
    run: ScheduleRun,
    *,
    chain_id: int,
    wallet_id: uuid.UUID | None = None,
) -> None:
    """The single place a finished run is announced: `schedule.run.succeeded|failed|skipped`,
    in the same DB transaction as the run's outcome. The run's transaction is named in the
    data, not as the event's `tx_id`: that one orders a transaction's own events."""
    events.append(
        session,
        "schedule.run." + run.status.value,
        data=run_event_data(run),
        wallet_id=WalletId(wallet_id) if wallet_id else None,
        chain_id=ChainId(chain_id),
    )
    log.info(
        "schedule.run." + run.status.value,
        chain_id=chain_id,
        wallet_id=str(wallet_id) if wallet_id else None,
        **run_event_data(run),
    )


def run_event_data(run: ScheduleRun) -> dict[str, str | None]:
    """The `data` of a schedule.run.* event: the run as GET /v1/schedules/{id}/runs shows it."""
    return {
        "schedule_id": str(run.schedule_id),
        "run_id": str(run.id),
        "scheduled_for": run.scheduled_for.isoformat(),
        "status": run.status.value,
        "transaction_id": str(run.transaction_id) if run.transaction_id else None,
        "reason": run.reason,
    }


def complete(schedule: Schedule, now: datetime) -> None:
    schedule.status = ScheduleStatus.COMPLETED
    schedule.next_run_at = None
    schedule.updated_at = now
