"""Use cases of schedules: create, read, list, pause, resume, cancel, list runs."""

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.cursor import decode_cursor, encode_cursor
from chainflow.core.errors import NotFound
from chainflow.domain.apikeys import service as apikeys
from chainflow.domain.chains import service as chains
from chainflow.domain.chains.errors import UnknownChain
from chainflow.domain.schedules import dca, repository
from chainflow.domain.schedules.errors import (
    IntervalTooShort,
    InvalidSchedule,
    NotAContract,
    ScheduleActionExpired,
    ScheduleFinished,
    ScheduleNotFound,
    ScheduleOwnerKeyInactive,
    WalletNotOnChain,
)
from chainflow.domain.schedules.models import (
    Misfire,
    Schedule,
    ScheduleRun,
    ScheduleStatus,
)
from chainflow.domain.schedules.planner import Trigger, parse_trigger, shortest_gap
from chainflow.domain.schedules.schemas import NATIVE, DcaAction, ScheduleCreate
from chainflow.domain.transactions import service as txs
from chainflow.domain.transactions.calldata import encode_calls
from chainflow.domain.transactions.errors import UnknownWallet
from chainflow.domain.wallets import service as wallets
from chainflow.domain.wallets.models import WalletStatus

# How far in the past a new schedule's start_at may be (README "Schedules").
MAX_START_AT_PAST = timedelta(days=1)

# Whether an address holds code on the schedule's chain (a DCA router and its tokens).
CodeCheck = Callable[[str], Awaitable[bool]]


def action_valid_until(row: Schedule) -> datetime | None:
    """A `transaction` action's fixed `valid_until`: no run at or after it can be signed."""
    at = row.action.get("valid_until") if row.action.get("type") == "transaction" else None
    return datetime.fromisoformat(str(at).replace("Z", "+00:00")) if at else None


def trigger_of(row: Schedule) -> Trigger:
    spec = row.trigger
    at = spec.get("at")
    return Trigger(
        cron=spec.get("cron"),
        timezone=spec.get("timezone", "UTC"),
        interval_s=spec.get("interval_s"),
        at=datetime.fromisoformat(at) if at else None,
    )


async def create_schedule(
    session: AsyncSession,
    body: ScheduleCreate,
    *,
    api_key_id: uuid.UUID | None,
    now: datetime,
    min_interval_s: int,
    has_code: CodeCheck | None = None,
) -> Schedule:
    """Check and store an active schedule; its first occurrence is `next_run_at`.

    Raises: InvalidTrigger, IntervalTooShort, InvalidSchedule (also a start_at more than
    `MAX_START_AT_PAST` ago), UnknownChain, UnknownWallet,
    WalletNotOnChain, NotAContract. Nothing is stored when one is raised.
    """
    spec = body.trigger
    trigger = parse_trigger(
        cron=spec.cron, timezone=spec.timezone, interval_s=spec.interval_s, at=spec.at
    )
    _check_start(body.start_at, now)
    start = body.start_at or now
    gap = shortest_gap(trigger, start)
    if gap is not None and gap < timedelta(seconds=min_interval_s):
        raise IntervalTooShort(
            f"occurrences are {gap.total_seconds():g} s apart; the floor is {min_interval_s} s "
            "(CHAINFLOW_SCHEDULE_MIN_INTERVAL_S)"
        )
    if trigger.at is not None and trigger.at <= now:
        raise InvalidSchedule("trigger.at is in the past")
    # An interval's first occurrence is one interval after now unless start_at is given.
    anchor = start
    if body.start_at is None and trigger.interval_s is not None:
        anchor = now + timedelta(seconds=trigger.interval_s)
    first = trigger.first_at_or_after(anchor, anchor=anchor)
    if first is None or (body.end_at is not None and first > body.end_at):
        raise InvalidSchedule("the trigger has no occurrence between start_at and end_at")
    wallet_id = await _check_target(session, body)
    await _check_action(body, has_code, first=max(first, now))
    row = Schedule(
        id=uuid.uuid4(),
        api_key_id=api_key_id,
        wallet_id=wallet_id,
        chain_id=body.chain_id,
        trigger=body.trigger.model_dump(mode="json", exclude_none=True)
        | ({"timezone": trigger.timezone} if trigger.cron else {}),
        start_at=anchor,
        end_at=body.end_at,
        max_runs=body.max_runs,
        misfire=Misfire(body.misfire),
        overlap=body.overlap,
        budget=body.budget,
        spent=0,
        action=body.action_dict(),
        status=ScheduleStatus.ACTIVE,
        next_run_at=first,
        runs=0,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    if isinstance(body.action, DcaAction) and body.action.token_in != NATIVE:
        # The allowance, as its own request of the same lane, before the first swap: the
        # lane signs in order, and a swap run waits until the allowance is there (dca.py).
        # What the wallet's other schedules on this token and router can still take is
        # granted too: an approve replaces the allowance (dca.approve_body).
        others = await repository.lock_same_spenders(session, row)
        pending = await repository.pending_amounts(session, [other.id for other in others])
        approval = await txs.submit(
            session,
            dca.approve_body(row, others, pending),
            api_key_id=api_key_id,
            idempotency_key=f"schedule-{row.id}-approve",
        )
        row.approval_tx_id = approval.tx_id
        await session.flush()
    return row


def _check_start(start_at: datetime | None, now: datetime) -> None:
    """A start_at long past is a mistake (a year typed wrong, a stale client): its occurrences
    before the schedule existed would only be recorded as misfires. Raises: InvalidSchedule."""
    if start_at is not None and start_at < now - MAX_START_AT_PAST:
        raise InvalidSchedule(
            f"start_at {start_at.isoformat()} is more than {MAX_START_AT_PAST.days} day in the "
            "past; give a later start_at, or none to start now"
        )


async def _check_target(session: AsyncSession, body: ScheduleCreate) -> uuid.UUID:
    try:
        chain = await chains.get_chain(session, body.chain_id, endpoints=False)
    except NotFound:
        raise UnknownChain(f"chain {body.chain_id} is not in the registry") from None
    if not chain.enabled:
        raise InvalidSchedule(f"chain {body.chain_id} is disabled")
    try:
        wallet = await wallets.get_wallet(session, body.wallet)
    except NotFound:
        raise UnknownWallet(f"wallet {body.wallet} does not exist") from None
    if wallet.status is WalletStatus.DISABLED:
        raise InvalidSchedule(f"wallet {wallet.address} is disabled")
    if not any(lane.chain_id == body.chain_id and lane.enabled for lane in wallet.chains):
        raise WalletNotOnChain(f"wallet {wallet.address} is not enabled on chain {body.chain_id}")
    return wallet.id


async def _check_action(
    body: ScheduleCreate, has_code: CodeCheck | None, *, first: datetime
) -> None:
    action = body.action
    if not isinstance(action, DcaAction):
        template = body.transaction_body()
        if template.valid_until is not None and template.valid_until <= first:
            # A fixed instant: every run's request would expire unsigned (audit). `first` is
            # the first occurrence or now, the later (review: a start_at in the past let a
            # valid_until already past through).
            raise InvalidSchedule(
                f"action.valid_until {template.valid_until.isoformat()} is not after the first "
                f"run {first.isoformat()}: every run's request would expire"
            )
        if template.function is not None:
            (encoded,) = await encode_calls([(template.function, template.args or [])])
            if isinstance(encoded, Exception):
                raise encoded
        return
    for name, address in (
        ("router", action.router),
        ("token_in", action.token_in),
        ("token_out", action.token_out),
    ):
        if address != NATIVE and has_code is not None and not await has_code(address):
            raise NotAContract(f"action.{name} {address} has no contract code on the chain")
    if action.token_in != NATIVE and action.approve == "exact":
        _check_allowance(action, budget=body.budget, max_runs=body.max_runs)


def _check_allowance(action: DcaAction, *, budget: int | None, max_runs: int | None) -> None:
    """The exact allowance of an ERC-20 token_in must exist and fit a uint256.
    Raises: InvalidSchedule, naming the fields."""
    if budget is None and max_runs is None:
        raise InvalidSchedule(
            "an ERC-20 token_in needs budget or max_runs (the allowance granted before the "
            'first swap), or approve: "unlimited"'
        )
    total = dca.approval_total(action.model_dump(mode="json"), budget=budget, max_runs=max_runs)
    if total > dca.MAX_UINT256:
        raise InvalidSchedule(
            f"action.amount_in x max_runs (max_runs {max_runs}) is over 2^256 - 1, the largest "
            "ERC-20 allowance; give a budget, a smaller amount_in or max_runs, or approve: "
            '"unlimited"'
        )


async def get_schedule(session: AsyncSession, schedule_id: uuid.UUID) -> Schedule:
    row = await repository.get(session, schedule_id)
    if row is None:
        raise ScheduleNotFound(f"schedule {schedule_id} does not exist")
    return row


async def list_schedules(
    session: AsyncSession, *, limit: int, cursor: str | None, status: ScheduleStatus | None
) -> tuple[Sequence[Schedule], str | None]:
    rows = await repository.list_page(
        session, limit=limit + 1, after=decode_cursor(cursor), status=status
    )
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(last.created_at, last.id)


async def set_status(
    session: AsyncSession, schedule_id: uuid.UUID, wanted: ScheduleStatus, *, now: datetime
) -> Schedule:
    """Pause, resume or cancel. A resumed schedule goes on from its next occurrence after
    now: the paused time is not a misfire. Raises: ScheduleNotFound, ScheduleFinished,
    ScheduleOwnerKeyInactive (resuming a schedule whose owner key is revoked, expired or
    deleted: its next run would only pause it again), ScheduleActionExpired (resuming one
    whose action's valid_until is not after its next run: every run would expire)."""
    row = await repository.get(session, schedule_id, for_update=True)
    if row is None:
        raise ScheduleNotFound(f"schedule {schedule_id} does not exist")
    if row.status in (ScheduleStatus.CANCELLED, ScheduleStatus.COMPLETED):
        if wanted is row.status:
            return row
        raise ScheduleFinished(f"schedule {schedule_id} is {row.status.value}")
    if wanted is ScheduleStatus.ACTIVE and row.status is ScheduleStatus.PAUSED:
        await _check_owner(session, row, now=now)
        upcoming = trigger_of(row).first_at_or_after(now, anchor=row.start_at)
        if upcoming is None or (row.end_at is not None and upcoming > row.end_at):
            row.status, row.next_run_at = ScheduleStatus.COMPLETED, None
            await session.flush()
            return row
        _check_valid_until(row, max(upcoming, now))
        row.next_run_at = upcoming
    if wanted is ScheduleStatus.CANCELLED:
        row.next_run_at = None
    row.status = wanted
    row.updated_at = now
    await session.flush()
    return row


def status_action(row: Schedule) -> str:
    """The audit action of a pause or resume (`set_status`) that left the schedule as `row`
    is: `schedule.paused`, else `schedule.resumed` (also for a resume that completed it)."""
    return "schedule.paused" if row.status is ScheduleStatus.PAUSED else "schedule.resumed"


def _check_valid_until(row: Schedule, upcoming: datetime) -> None:
    """Raises: ScheduleActionExpired when the action's valid_until is not after the next run
    (review: the resumed schedule stayed active, and every run failed as expired)."""
    valid_until = action_valid_until(row)
    if valid_until is not None and valid_until <= upcoming:
        raise ScheduleActionExpired(
            f"schedule {row.id} cannot be resumed: its action.valid_until "
            f"{valid_until.isoformat()} is not after its next run {upcoming.isoformat()}; "
            "create a new schedule with a later valid_until"
        )


async def _check_owner(session: AsyncSession, row: Schedule, *, now: datetime) -> None:
    """Raises: ScheduleOwnerKeyInactive unless the schedule's owner key can still submit (the
    key's id and times are not named: a `schedules` key reads this)."""
    if row.api_key_id is None:  # created from the CLI or by the service directly
        return
    gone = await apikeys.why_not_live(session, row.api_key_id, now=now, lock=True)
    if gone is not None:
        raise ScheduleOwnerKeyInactive(
            f"schedule {row.id} cannot be resumed: its owner API key is {gone.state}; "
            "create a new schedule under a live key"
        )


async def list_runs(
    session: AsyncSession,
    schedule_id: uuid.UUID,
    *,
    limit: int,
    cursor: str | None,
    newest_first: bool = False,
) -> tuple[Sequence[ScheduleRun], str | None]:
    await get_schedule(session, schedule_id)
    rows = await repository.runs_page(
        session,
        schedule_id,
        limit=limit + 1,
        after=decode_cursor(cursor),
        newest_first=newest_first,
    )
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(last.scheduled_for, last.id)
