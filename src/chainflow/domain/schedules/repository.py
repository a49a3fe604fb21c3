"""All SQL of schedules and their runs."""

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, and_, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.domain.schedules.models import RunStatus, Schedule, ScheduleRun, ScheduleStatus
from chainflow.domain.transactions.models import Transaction
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.wallets.models import Wallet

TERMINAL = (
    TxStatus.CONFIRMED,
    TxStatus.REVERTED,
    TxStatus.FAILED,
    TxStatus.CANCELLED,
    TxStatus.EXPIRED,
)


async def get(
    session: AsyncSession, schedule_id: uuid.UUID, *, for_update: bool = False
) -> Schedule | None:
    query = select(Schedule).where(Schedule.id == schedule_id)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def lock_same_spenders(session: AsyncSession, row: Schedule) -> list[Schedule]:
    """The wallet's other live (active or paused) `dca_swap` schedules on the chain spending
    the same token through the same router as `row`, which share one allowance. The wallet
    row is locked first (`FOR NO KEY UPDATE`: admissions' key-share locks pass), so two
    schedules created at once take turns and the later one counts the earlier one."""
    await session.execute(
        select(Wallet.id).where(Wallet.id == row.wallet_id).with_for_update(key_share=True)
    )
    query = select(Schedule).where(
        Schedule.wallet_id == row.wallet_id,
        Schedule.chain_id == row.chain_id,
        Schedule.status.in_((ScheduleStatus.ACTIVE, ScheduleStatus.PAUSED)),
        Schedule.id != row.id,
    )
    mine = _spending(row)
    return [other for other in (await session.scalars(query)).all() if _spending(other) == mine]


async def pending_amounts(
    session: AsyncSession, schedule_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """The `amount_in` of each schedule's runs still pending (no outcome recorded): a run
    whose transaction fails unspent is given back to its budget, and spends again later."""
    if not schedule_ids:
        return {}
    query = select(ScheduleRun.schedule_id, ScheduleRun.amount_in).where(
        ScheduleRun.schedule_id.in_(schedule_ids), ScheduleRun.status == RunStatus.PENDING
    )
    amounts: dict[uuid.UUID, int] = {}
    for schedule_id, amount in (await session.execute(query)).all():
        amounts[schedule_id] = amounts.get(schedule_id, 0) + (amount or 0)
    return amounts


def _spending(row: Schedule) -> tuple[str, str] | None:
    """(token_in, router) of a DCA schedule, lower case; None for any other action."""
    action = row.action
    if action.get("type") != "dca_swap":
        return None
    return str(action.get("token_in")).lower(), str(action.get("router")).lower()


async def list_page(
    session: AsyncSession,
    *,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
    status: ScheduleStatus | None,
) -> Sequence[Schedule]:
    query = select(Schedule).order_by(Schedule.created_at, Schedule.id).limit(limit)
    if after is not None:
        at, row_id = after
        query = query.where(
            or_(Schedule.created_at > at, and_(Schedule.created_at == at, Schedule.id > row_id))
        )
    if status is not None:
        query = query.where(Schedule.status == status)
    return (await session.execute(query)).scalars().all()


async def lock_due(
    session: AsyncSession, chain_id: int, *, now: datetime, limit: int
) -> Sequence[Schedule]:
    """Active schedules of a chain with an occurrence due, locked; rows another worker holds
    are skipped (PostgreSQL), so each is worked on by one worker at a time. SQLite has no row
    locks: its writers take turns on the database (BEGIN IMMEDIATE)."""
    query = (
        select(Schedule)
        .where(
            Schedule.status == ScheduleStatus.ACTIVE,
            Schedule.chain_id == chain_id,
            Schedule.next_run_at <= now,
        )
        .order_by(Schedule.next_run_at, Schedule.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return (await session.execute(query)).scalars().all()


async def work_of(session: AsyncSession, chain_id: int, *, now: datetime) -> tuple[bool, bool]:
    """(a pending run of the chain has a terminal transaction, an active schedule of the chain
    is due): one read, so that a pass with nothing to do opens no write transaction."""
    finishable = exists().where(
        ScheduleRun.status == RunStatus.PENDING,
        ScheduleRun.transaction_id == Transaction.id,
        Transaction.chain_id == chain_id,
        Transaction.status.in_(TERMINAL),
    )
    due = exists().where(
        Schedule.status == ScheduleStatus.ACTIVE,
        Schedule.chain_id == chain_id,
        Schedule.next_run_at <= now,
    )
    row = (await session.execute(select(finishable, due))).one()
    return bool(row[0]), bool(row[1])


async def pending_run(session: AsyncSession, schedule_id: uuid.UUID) -> ScheduleRun | None:
    """The schedule's run still in progress: pending, and its transaction not terminal. A run
    whose transaction is terminal is over even while another pass, holding its row lock,
    is still recording the outcome (concurrent passes must not skip the next occurrence)."""
    query = (
        select(ScheduleRun)
        .outerjoin(Transaction, ScheduleRun.transaction_id == Transaction.id)
        .where(
            ScheduleRun.schedule_id == schedule_id,
            ScheduleRun.status == RunStatus.PENDING,
            or_(Transaction.id.is_(None), Transaction.status.not_in(TERMINAL)),
        )
        .limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none()


def _unsettled(schedule_id: uuid.UUID) -> Select[ScheduleRun, Transaction]:
    """Runs of the schedule whose transaction is terminal but whose outcome `finish_runs` has
    not recorded yet."""
    return (
        select(ScheduleRun, Transaction)
        .join(Transaction, ScheduleRun.transaction_id == Transaction.id)
        .where(
            ScheduleRun.schedule_id == schedule_id,
            ScheduleRun.status == RunStatus.PENDING,
            Transaction.status.in_(TERMINAL),
        )
    )


async def lock_unsettled(
    session: AsyncSession, schedule_id: uuid.UUID
) -> Sequence[tuple[ScheduleRun, Transaction]]:
    """Those runs, locked; the ones another pass holds (recording them) are skipped."""
    query = _unsettled(schedule_id).with_for_update(of=ScheduleRun, skip_locked=True)
    return [(run, tx) for run, tx in (await session.execute(query)).all()]


async def unsettled_refund(session: AsyncSession, schedule_id: uuid.UUID) -> int:
    """What those runs, once recorded, give back to the budget: the amount of each one whose
    transaction did not execute (as `outcomes.finish_runs` does)."""
    rows = await session.execute(_unsettled(schedule_id))
    return sum(run.amount_in or 0 for run, tx in rows.all() if tx.status is not TxStatus.CONFIRMED)


async def lock_finished(
    session: AsyncSession, chain_id: int, *, limit: int
) -> Sequence[tuple[ScheduleRun, Transaction]]:
    """Pending runs of a chain whose transaction is terminal, locked (others skipped)."""
    query = (
        select(ScheduleRun, Transaction)
        .join(Transaction, ScheduleRun.transaction_id == Transaction.id)
        .where(
            ScheduleRun.status == RunStatus.PENDING,
            Transaction.chain_id == chain_id,
            Transaction.status.in_(TERMINAL),
        )
        .order_by(ScheduleRun.scheduled_for)
        .limit(limit)
        .with_for_update(of=ScheduleRun, skip_locked=True)
    )
    return [(run, tx) for run, tx in (await session.execute(query)).all()]


async def transaction_status(session: AsyncSession, tx_id: uuid.UUID) -> TxStatus | None:
    return (
        await session.execute(select(Transaction.status).where(Transaction.id == tx_id))
    ).scalar_one_or_none()


async def runs_page(
    session: AsyncSession,
    schedule_id: uuid.UUID,
    *,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
    newest_first: bool = False,
) -> Sequence[ScheduleRun]:
    order = (ScheduleRun.scheduled_for, ScheduleRun.id)
    query = (
        select(ScheduleRun)
        .where(ScheduleRun.schedule_id == schedule_id)
        .order_by(*(c.desc() for c in order) if newest_first else order)
        .limit(limit)
    )
    if after is not None:
        at, row_id = after
        if newest_first:
            later = or_(
                ScheduleRun.scheduled_for < at,
                and_(ScheduleRun.scheduled_for == at, ScheduleRun.id < row_id),
            )
        else:
            later = or_(
                ScheduleRun.scheduled_for > at,
                and_(ScheduleRun.scheduled_for == at, ScheduleRun.id > row_id),
            )
        query = query.where(later)
    return (await session.execute(query)).scalars().all()
