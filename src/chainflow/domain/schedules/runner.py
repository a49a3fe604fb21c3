"""Run due occurrences exactly once (outcomes.py records how each run ended).

Each pass locks the due schedules of a chain (`FOR UPDATE SKIP LOCKED`: another worker skips
them), and for each one, in the caller's single database transaction, inserts the run row
(unique on schedule and occurrence), submits its transaction through the same admission as
`POST /v1/transactions` with a key derived from the occurrence, and moves `next_run_at` on.
A crash before the commit leaves none of it; the next pass does it again, once.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.errors import ChainflowError
from chainflow.core.logging import get_logger
from chainflow.core.types import WalletId
from chainflow.domain.apikeys import service as apikeys
from chainflow.domain.audit import service as audit
from chainflow.domain.schedules import repository
from chainflow.domain.schedules.models import (
    Misfire,
    RunStatus,
    Schedule,
    ScheduleRun,
    ScheduleStatus,
)
from chainflow.domain.schedules.outcomes import complete, finish, record_run
from chainflow.domain.schedules.planner import MAX_MISSED_COUNTED, Trigger
from chainflow.domain.schedules.plans import Builder, Planned
from chainflow.domain.schedules.schemas import template_body
from chainflow.domain.schedules.service import action_valid_until, trigger_of
from chainflow.domain.transactions import service as txs
from chainflow.domain.transactions.spending import Ledger

log = get_logger(__name__)

WORKER = audit.Actor(key_id=None, via="worker")  # who pauses a schedule whose key is gone


@dataclass
class PassResult:
    started: list[ScheduleRun] = field(default_factory=list)  # with a transaction
    recorded: list[ScheduleRun] = field(default_factory=list)  # skipped or failed at once


@dataclass
class _PassState:
    """What every run of one pass shares: its builders, the policies it locked at its start
    (the only ones its runs admit against), what it did."""

    builders: dict[str, Builder]
    ledger: Ledger
    out: PassResult


class Work(NamedTuple):
    """What a pass over a chain has to do."""

    finish: bool  # a pending run's transaction is terminal: record its outcome
    start: bool  # an active schedule has an occurrence due


async def work_of(session: AsyncSession, chain_id: int, *, now: datetime) -> Work:
    """Whether a pass has anything to do, in one read (a read-only session will do)."""
    finish, start = await repository.work_of(session, chain_id, now=now)
    return Work(finish=finish, start=start)


def idempotency_key(schedule_id: uuid.UUID, occurrence: datetime) -> str:
    """The key a run's transaction is stored under: one per occurrence, under the schedule's
    API key, so a second submission of the same occurrence could only replay the first."""
    return f"schedule-{schedule_id}-{int(occurrence.timestamp() * 1000)}"


async def start_due(
    session: AsyncSession,
    chain_id: int,
    *,
    now: datetime,
    grace: timedelta,
    builders: dict[str, Builder] | None = None,
    limit: int = 100,
) -> PassResult:
    """Run every due occurrence of the chain's active schedules (see the module's doc)."""
    result = PassResult()
    due = await repository.lock_due(session, chain_id, now=now, limit=limit)
    await apikeys.lock_keys(session, (s.api_key_id for s in due if s.api_key_id is not None))
    # The policies of the due wallets, locked in id order for the whole pass; every run admits
    # against this ledger, so a policy committed mid-pass is never locked later, out of order.
    ledger = Ledger(session, lock=True)
    await ledger.lock_first(WalletId(s.wallet_id) for s in due)
    state = _PassState(builders=builders or {}, ledger=ledger, out=result)
    for schedule in due:
        await _advance(session, schedule, now=now, grace=grace, state=state)
    await session.flush()
    return result


async def _advance(
    session: AsyncSession,
    schedule: Schedule,
    *,
    now: datetime,
    grace: timedelta,
    state: _PassState,
) -> None:
    out = state.out
    trigger = trigger_of(schedule)
    schedule.updated_at = now  # also the time the runs below are recorded at
    assert schedule.next_run_at is not None  # noqa: S101 - lock_due selects due ones only
    end = now if schedule.end_at is None else min(now, schedule.end_at)
    listed, unlisted = trigger.due(schedule.next_run_at, end, anchor=schedule.start_at)
    if not listed:  # the next occurrence is past end_at
        complete(schedule, now)
        return
    *missed, latest = listed
    runs_latest = schedule.misfire is Misfire.RUN_ONCE or now - latest <= grace
    if not runs_latest:
        missed.append(latest)
    why = "missed while no worker ran (misfire: skip)"
    if schedule.misfire is Misfire.RUN_ONCE:
        why = f"missed while no worker ran (misfire: run_once ran {latest.isoformat()})"
    for index, occurrence in enumerate(missed):
        more = _unlisted(unlisted) if index == len(missed) - 1 else ""
        out.recorded.append(
            record_run(session, schedule, occurrence, RunStatus.SKIPPED, why + more)
        )
    if runs_latest:
        await _run(session, schedule, latest, now=now, state=state)
    if schedule.status is ScheduleStatus.ACTIVE:
        _move_on(schedule, trigger, latest, now=now)


def _unlisted(count: int | None) -> str:
    """The tail of the last missed occurrence's reason: the ones not listed as runs."""
    if count is None:
        return f"; more than {MAX_MISSED_COUNTED} more occurrences missed (not counted)"
    return f"; {count} more occurrences missed" if count else ""


async def _run(
    session: AsyncSession,
    schedule: Schedule,
    occurrence: datetime,
    *,
    now: datetime,
    state: _PassState,
) -> None:
    """Run one occurrence, or record why it did not run. Never deferred to a later pass: a
    pass that comes after the misfire grace would record it as missed (review)."""
    out = state.out
    if await _held_back(session, schedule, occurrence, now=now, out=out):
        return
    try:
        planned = await _plan(session, schedule, now, state.builders)
    except ChainflowError as exc:
        reason = f"{exc.code}: {exc.detail}"
        out.recorded.append(record_run(session, schedule, occurrence, RunStatus.FAILED, reason))
        return
    except ValueError as exc:  # a stored action the request schema no longer takes
        reason = f"invalid_action: {exc}"
        out.recorded.append(record_run(session, schedule, occurrence, RunStatus.FAILED, reason))
        return
    if planned.skip_reason is not None or planned.body is None:
        reason = planned.skip_reason or "nothing to run"
        out.recorded.append(record_run(session, schedule, occurrence, RunStatus.SKIPPED, reason))
        return
    if await _over_budget(session, schedule, occurrence, amount=planned.amount, now=now, out=out):
        return
    try:
        submitted = await txs.submit(
            session,
            planned.body,
            api_key_id=schedule.api_key_id,
            idempotency_key=idempotency_key(schedule.id, occurrence),
            ledger=state.ledger,
        )
    except ChainflowError as exc:  # refused at admission (a paused wallet, a policy, ...)
        reason = f"{exc.code}: {exc.detail}"
        out.recorded.append(record_run(session, schedule, occurrence, RunStatus.FAILED, reason))
        return
    run = ScheduleRun(
        id=uuid.uuid4(),
        schedule_id=schedule.id,
        scheduled_for=occurrence,
        status=RunStatus.PENDING,
        transaction_id=submitted.tx_id,
        amount_in=planned.amount or None,
        quote_out=planned.quote_out,
        created_at=now,
    )
    session.add(run)
    schedule.runs += 1
    schedule.spent += planned.amount
    out.started.append(run)
    if _exhausted(schedule):
        complete(schedule, now)


def _past_valid_until(schedule: Schedule, occurrence: datetime, *, now: datetime) -> str | None:
    """Why the run cannot happen when the action's fixed valid_until is not after it: its
    request, and every later one's, would expire unsigned (review: the schedule stayed
    active, every run failed as expired)."""
    valid_until = action_valid_until(schedule)
    if valid_until is None or valid_until > max(occurrence, now):
        return None
    return (
        f"action.valid_until {valid_until.isoformat()} is not after this run: every run's "
        "request would expire; the schedule is completed"
    )


async def _held_back(
    session: AsyncSession,
    schedule: Schedule,
    occurrence: datetime,
    *,
    now: datetime,
    out: PassResult,
) -> bool:
    """The checks before a run's request is built: the action's valid_until (past it, the
    schedule is completed), its owner key, overlap, the budget (for the action's stated
    amount: an exact ERC-20 allowance spent would skip the run for the allowance instead, and
    the schedule would never end). True: the run is recorded (skipped or failed); False: it
    goes ahead."""
    expired = _past_valid_until(schedule, occurrence, now=now)
    if expired is not None:
        out.recorded.append(record_run(session, schedule, occurrence, RunStatus.SKIPPED, expired))
        complete(schedule, now)
        return True
    if await _owner_gone(session, schedule, occurrence, now=now, out=out):
        return True
    if await repository.pending_run(session, schedule.id) is not None:
        reason = "the previous run is still pending (overlap: skip)"
        out.recorded.append(record_run(session, schedule, occurrence, RunStatus.SKIPPED, reason))
        return True
    return await _over_budget(
        session, schedule, occurrence, amount=_stated_amount(schedule), now=now, out=out
    )


def _stated_amount(schedule: Schedule) -> int:
    """What a run spends from the budget, as the stored action says (`amount_in` or `value`;
    one the schema would refuse counts 0 here, and the run fails when its request is built)."""
    stated = schedule.action.get("amount_in") or schedule.action.get("value") or 0
    try:
        return max(0, int(stated))
    except (TypeError, ValueError):
        return 0


async def _over_budget(
    session: AsyncSession,
    schedule: Schedule,
    occurrence: datetime,
    *,
    amount: int,
    now: datetime,
    out: PassResult,
) -> bool:
    """A run of `amount` would exceed the budget: skipped, and the schedule ends (True). Judged
    with every finished run's outcome: a run whose transaction is terminal but whose outcome
    no pass has recorded yet is recorded here first (its refund could otherwise come back to
    an ended schedule; review: budget 7 ended at "7 of 7 spent", then the refund left it
    completed with 0 spent), and one another pass is recording right now (its row locked,
    waiting for this schedule's lock to give the amount back) counts as given back. The
    occurrence is judged now, never deferred: a deferred one became a misfire when the next
    pass came after the grace (review)."""
    if schedule.budget is None or schedule.spent + amount <= schedule.budget:
        return False
    for run, tx in await repository.lock_unsettled(session, schedule.id):
        await finish(session, run, tx, now=now)
    spent = schedule.spent - await repository.unsettled_refund(session, schedule.id)
    if spent + amount <= schedule.budget:
        return False
    reason = f"budget reached: {spent} of {schedule.budget} spent"
    out.recorded.append(record_run(session, schedule, occurrence, RunStatus.SKIPPED, reason))
    complete(schedule, now)
    return True


async def _owner_gone(
    session: AsyncSession,
    schedule: Schedule,
    occurrence: datetime,
    *,
    now: datetime,
    out: PassResult,
) -> bool:
    """A run submits as the key that created the schedule: once that key is revoked or
    expired (or deleted), the run fails without a transaction and the schedule is paused, in
    the audit log as `schedule.paused` by the worker, so revoking a key stops its money
    moving (audit: a revoked key's schedule made 5 more transfers). The key's row stays
    share-locked until this pass commits, so a revoke cannot commit between this check and
    the run's transaction (review: one more run submitted). The run's reason says only what
    became of the key: `schedules` keys and webhook receivers read it (review: it named the
    key's id and its revocation time)."""
    if schedule.api_key_id is None:  # created from the CLI or by the service directly
        return False
    gone = await apikeys.why_not_live(session, schedule.api_key_id, now=now, lock=True)
    if gone is None:
        return False
    reason = f"{gone.code}: owner API key {gone.state}; the schedule is paused"
    out.recorded.append(record_run(session, schedule, occurrence, RunStatus.FAILED, reason))
    schedule.status = ScheduleStatus.PAUSED
    audit.record(session, WORKER, "schedule.paused", resource="schedule", resource_id=schedule.id)
    log.warning(
        "schedule.paused",
        schedule_id=str(schedule.id),
        api_key_id=str(schedule.api_key_id),
        reason=gone.code,
    )
    return True


def _exhausted(schedule: Schedule) -> bool:
    """max_runs made. The budget is not looked at here: the run just started may fail and be
    given back (`finish_runs`), so a schedule ends for its budget only when a run would
    exceed it, a check made with every finished run's outcome recorded (`_over_budget`)."""
    return schedule.max_runs is not None and schedule.runs >= schedule.max_runs


async def _plan(
    session: AsyncSession, schedule: Schedule, now: datetime, builders: dict[str, Builder]
) -> Planned:
    kind = schedule.action.get("type")
    if kind == "transaction":
        body = template_body(
            schedule.action, wallet=str(schedule.wallet_id), chain_id=schedule.chain_id
        )
        return Planned(body=body, amount=body.value)
    builder = builders.get(str(kind))
    if builder is None:
        return Planned(body=None, skip_reason=f"no worker here can run a {kind} action")
    return await builder(session, schedule, now)


def _move_on(schedule: Schedule, trigger: Trigger, latest: datetime, *, now: datetime) -> None:
    nxt = trigger.next_after(max(latest, now), anchor=schedule.start_at)
    if nxt is None or (schedule.end_at is not None and nxt > schedule.end_at):
        complete(schedule, now)
        return
    schedule.next_run_at = nxt
    schedule.updated_at = now


def occurrences_of(runs: Sequence[ScheduleRun]) -> list[datetime]:
    return [run.scheduled_for for run in runs]
