"""The reads of transactions and their attempts (no locks: locks.py takes them)."""

import functools
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    Table,
    and_,
    bindparam,
    case,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, selectinload
from sqlalchemy.orm.util import AliasedClass

from chainflow.core.types import WalletId
from chainflow.domain.transactions.fees import FeeFloor
from chainflow.domain.transactions.models import Transaction, TxAttempt
from chainflow.domain.transactions.rows import (
    QUEUED_COLUMNS,
    Queued,
)
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.wallets.models import NONCE_GAP, Wallet, WalletChain, WalletStatus
from chainflow.domain.wallets.repository import drainable_by
from chainflow.infra.db.lease_clock import lease_now
from chainflow.infra.db.params import one_of, one_of_named, values_of
from chainflow.infra.db.types import wei_at_least

_TRANSACTIONS = cast(Table, Transaction.__table__)
_ATTEMPTS = cast(Table, TxAttempt.__table__)
_queued = cast(Callable[..., Queued], Queued)  # a row of QUEUED_COLUMNS, in order
_QUEUED_LANE = QUEUED_COLUMNS.index("wallet_id")


async def get(session: AsyncSession, tx_id: uuid.UUID, *, full: bool = False) -> Transaction | None:
    query = select(Transaction).where(Transaction.id == tx_id)
    if full:
        query = query.options(selectinload(Transaction.attempts), selectinload(Transaction.events))
    return (await session.scalars(query)).one_or_none()


async def get_by_idempotency_keys(
    session: AsyncSession, api_key_id: uuid.UUID | None, keys: Sequence[str]
) -> dict[str, Transaction]:
    """The requests stored under any of these keys, by key, with attempts and events."""
    query = (
        select(Transaction)
        .where(Transaction.api_key_id == api_key_id, Transaction.idempotency_key.in_(keys))
        .options(selectinload(Transaction.attempts), selectinload(Transaction.events))
    )
    return {tx.idempotency_key or "": tx for tx in (await session.scalars(query)).all()}


@dataclass(frozen=True)
class TxFilters:
    """What a page of requests is narrowed to (None: any)."""

    status: TxStatus | None = None
    wallet_id: uuid.UUID | None = None
    chain_id: int | None = None
    hash: str | None = None  # any attempt's hash, lower case
    idempotency_key: str | None = None  # under any API key
    newest_first: bool = False
    # a restricted API key's wallets and chains (issue 21); None: all
    wallet_ids: Collection[uuid.UUID] | None = None
    chain_ids: Collection[int] | None = None


async def list_page(
    session: AsyncSession,
    *,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
    filters: TxFilters,
) -> Sequence[Transaction]:
    query = select(Transaction).where(*_conditions(filters))
    if after is not None:
        created_at, row_id = after
        if filters.newest_first:
            older = Transaction.created_at < created_at
            query = query.where(
                or_(older, and_(Transaction.created_at == created_at, Transaction.id < row_id))
            )
        else:
            newer = Transaction.created_at > created_at
            query = query.where(
                or_(newer, and_(Transaction.created_at == created_at, Transaction.id > row_id))
            )
    if filters.newest_first:
        query = query.order_by(Transaction.created_at.desc(), Transaction.id.desc())
    else:
        query = query.order_by(Transaction.created_at, Transaction.id)
    return (await session.scalars(query.limit(limit))).all()


def _conditions(filters: TxFilters) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.status is not None:
        conditions.append(Transaction.status == filters.status)
    if filters.wallet_id is not None:
        conditions.append(Transaction.wallet_id == filters.wallet_id)
    if filters.chain_id is not None:
        conditions.append(Transaction.chain_id == filters.chain_id)
    if filters.hash is not None:  # stored lower case (signing.transactions); unique: indexed
        attempts = select(TxAttempt.tx_id).where(TxAttempt.hash == filters.hash)
        conditions.append(Transaction.id.in_(attempts))
    if filters.idempotency_key is not None:
        conditions.append(Transaction.idempotency_key == filters.idempotency_key)
    if filters.wallet_ids is not None:
        conditions.append(Transaction.wallet_id.in_(filters.wallet_ids))
    if filters.chain_ids is not None:
        conditions.append(Transaction.chain_id.in_(filters.chain_ids))
    return conditions


@dataclass
class LaneHolders:
    """Who holds the lanes with queued work (lanes_with_queued): lanes another live process
    holds, with their counts, and the lanes the caller holds among those it may drain."""

    elsewhere: dict[WalletId, int] = field(default_factory=dict)
    here: set[WalletId] = field(default_factory=set)


async def lanes_with_queued(
    session: AsyncSession,
    chain_id: int,
    *,
    owner: str,
    now: datetime,
    floor: FeeFloor | None = None,
    holders: LaneHolders | None = None,
) -> dict[WalletId, int]:
    """Wallets with queued requests on this chain that `owner` may drain, with how many each
    a drain can act on: all of them, or under a fee `floor` those whose fee cap can pay it
    and those due to expire; 0 for a lane whose requests all wait for the base fee to fall.

    Left out, as a drain would ask the node for their counts every round to sign nothing:
    paused wallets, lanes waiting for funds (the tracker re-sends their refused attempt),
    lanes shown `nonce_gap` but for their requests past their valid_until (a drain only
    expires those: the gap waits for an operator, review), and
    lanes whose drain lease another live process holds (its drains take them; their lease
    runs out within `lane_lease_s` if it dies). With `holders`, those are read too, into
    `holders.elsewhere`, and the lanes `owner` holds into `holders.here` (lane placement,
    workers/placement.py): the same grouping, with the lease columns.
    """
    counted = func.count() if floor is None else _actionable(session, floor, now)
    # Counted per wallet first, then joined to the (at most one per wallet) wallet and lane
    # rows: joined first, PostgreSQL probed both primary keys for every queued row, every
    # round (~7 probes of each per transaction in a batch run; docs/performance.md item 45).
    due = func.sum(case((_due(now), 1), else_=0))
    queued = (
        select(Transaction.wallet_id.label("wallet_id"), counted.label("n"), due.label("due"))
        .where(Transaction.chain_id == chain_id, Transaction.status == TxStatus.QUEUED)
        .group_by(Transaction.wallet_id)
        .subquery("queued")
    )
    # Lane leases are judged on the clock they are written on (the server's, PostgreSQL);
    # `now` (the host's) is for the requests' valid_until.
    drainable = drainable_by(owner, lease_now(session))
    gapped = WalletChain.paused_reason == NONCE_GAP
    count = case((gapped, queued.c.due), else_=queued.c.n)
    columns: list[Any] = [queued.c.wallet_id, count.label("n")]
    conditions = [
        Wallet.status != WalletStatus.PAUSED,
        or_(WalletChain.paused_reason.is_(None), ~gapped, queued.c.due > 0),
    ]
    if holders is None:
        conditions.append(drainable)
    else:
        columns += [drainable.label("drainable"), (WalletChain.lease_owner == owner).label("here")]
    lane = and_(WalletChain.wallet_id == queued.c.wallet_id, WalletChain.chain_id == chain_id)
    lanes = (
        select(*columns)
        .select_from(queued)
        .join(Wallet, Wallet.id == queued.c.wallet_id)
        .join(WalletChain, lane)
        .where(*conditions)
        .subquery()
    )
    # Checked once per lane, after grouping: as a condition on each queued row it ran once
    # per row, each looking at every signed request of the lane with its attempts (80 ms a
    # round with 3,200 queued; docs/performance.md).
    refused = _signed_of_lane()
    starved = (
        select(refused.id)
        .join(TxAttempt, TxAttempt.tx_id == refused.id)
        .where(
            refused.chain_id == chain_id,
            refused.wallet_id == lanes.c.wallet_id,
            _refused_for_funds(refused),
        )
        .exists()
    )
    if holders is None:
        query = select(lanes.c.wallet_id, lanes.c.n).where(~starved)
        return {wallet_id: int(count) for wallet_id, count in (await session.execute(query)).all()}
    query = select(lanes.c.wallet_id, lanes.c.n, lanes.c.drainable, lanes.c.here).where(~starved)
    return _by_holder([tuple(row) for row in (await session.execute(query)).all()], holders)


def _by_holder(rows: Sequence[Sequence[Any]], holders: LaneHolders) -> dict[WalletId, int]:
    """The lanes the caller may drain, with their counts; the others into `holders`."""
    offered: dict[WalletId, int] = {}
    for wallet_id, count, is_drainable, is_here in rows:
        if not is_drainable:
            holders.elsewhere[wallet_id] = int(count)
            continue
        offered[wallet_id] = int(count)
        if is_here:
            holders.here.add(wallet_id)
    return offered


@functools.cache
def _signed_of_lane() -> type[Transaction]:
    """The alias of lanes_with_queued's refused-for-funds check, made once: making it is
    most of the Python time of building that query (0.8 of 1.2 ms), which every worker round
    pays, the empty ones too (docs/performance.md item 19)."""
    return aliased(Transaction, name="refused")


def _actionable(session: AsyncSession, floor: FeeFloor, now: datetime) -> ColumnElement[int]:
    """How many queued requests of a group a drain can act on under `floor`."""
    due = _due(now)
    if floor.chain_pays:
        pays = cap_reaches(session, floor.base_fee_wei)
        return func.sum(case((or_(pays, due), 1), else_=0))
    return func.sum(case((due, 1), else_=0))


def _due(now: datetime) -> ColumnElement[bool]:
    """The queued request is past its valid_until: a drain expires it."""
    return and_(Transaction.valid_until.is_not(None), Transaction.valid_until <= now)


def cap_reaches(session: AsyncSession, floor_wei: int) -> ColumnElement[bool]:
    """The request sets no fee cap, or one of at least `floor_wei`."""
    cap = Transaction.max_fee_per_gas_cap
    return or_(cap.is_(None), wei_at_least(cap, floor_wei, dialect=_dialect(session)))


async def queued_for_lane(
    session: AsyncSession,
    chain_id: int,
    wallet_id: WalletId,
    *,
    limit: int,
    min_fee_cap_wei: int | None = None,
) -> Sequence[Transaction]:
    """The lane's first queued requests, leaving out those whose own fee cap is below
    `min_fee_cap_wei`: they wait, and must not take the lane's room (issue 14)."""
    query = select(Transaction).where(
        Transaction.chain_id == chain_id,
        Transaction.wallet_id == wallet_id,
        Transaction.status == TxStatus.QUEUED,
    )
    if min_fee_cap_wei is not None:
        query = query.where(cap_reaches(session, min_fee_cap_wei))
    query = query.order_by(Transaction.created_at, Transaction.id).limit(limit)
    return (await session.scalars(query)).all()


async def queued_for_lanes(
    session: AsyncSession,
    chain_id: int,
    rooms: Mapping[WalletId, int],
    *,
    min_fee_cap_wei: int | None = None,
) -> dict[WalletId, list[Queued]]:
    """queued_for_lane for many lanes in one SELECT: each lane's first `rooms[lane]` queued
    requests, in submission order (a drain's plan read them one SELECT per lane), as plain
    rows of the columns a drain reads (rows.Queued): one Core statement, no ORM instances."""
    rooms = {wallet_id: room for wallet_id, room in rooms.items() if room > 0}
    if not rooms:
        return {}
    dialect = _dialect(session)
    params: dict[str, object] = {
        "chain_id": chain_id,
        "lanes": values_of(dialect, list(rooms)),
        "room": max(rooms.values()),
    }
    if min_fee_cap_wei is None:
        query = _queued_query(False, dialect)
    elif dialect == "sqlite":  # wei_at_least compares text there: built per call
        query = _queued_query_of(cap_reaches(session, min_fee_cap_wei), dialect)
    else:
        query, params["floor"] = _queued_query(True, dialect), min_fee_cap_wei
    found: dict[WalletId, list[Queued]] = {}
    for row in await session.execute(query, params):
        lane = found.setdefault(row[_QUEUED_LANE], [])
        if len(lane) < rooms[row[_QUEUED_LANE]]:
            lane.append(_queued(*row))
    return found


@functools.cache
def _queued_query(floor: bool, dialect: str) -> Select[Any]:
    """queued_for_lanes' statement, built once per form (with a fee floor as a parameter, on
    PostgreSQL, or without) and dialect: building it and its cache key was ~2.5 ms of the
    draining worker's CPU per plan (docs/performance.md item 42)."""
    cap = _TRANSACTIONS.c.max_fee_per_gas_cap
    pays = or_(cap.is_(None), cap >= bindparam("floor", type_=cap.type)) if floor else None
    return _queued_query_of(pays, dialect)


def _queued_query_of(pays: ColumnElement[bool] | None, dialect: str) -> Select[Any]:
    """Each lane's first `room` queued requests whose fee cap `pays` (any, if None), of the
    lanes `lanes` of chain `chain_id` (parameters; `lanes` bound by `params.values_of`), by
    lane and place."""
    t = _TRANSACTIONS.c
    place = func.row_number().over(partition_by=t.wallet_id, order_by=(t.created_at, t.id))
    ranked = select(*(t[name] for name in QUEUED_COLUMNS), place.label("place")).where(
        t.chain_id == bindparam("chain_id"),
        one_of_named(t.wallet_id, "lanes", dialect),
        t.status == TxStatus.QUEUED,
    )
    if pays is not None:
        ranked = ranked.where(pays)
    lanes = ranked.subquery()
    return (
        select(*(lanes.c[name] for name in QUEUED_COLUMNS))
        .where(lanes.c.place <= bindparam("room", type_=Integer))
        .order_by(lanes.c.wallet_id, lanes.c.place)
    )


def _dialect(session: AsyncSession) -> str:
    return session.bind.dialect.name if session.bind is not None else ""


async def waiting_for_funds(
    session: AsyncSession, chain_id: int, wallet_ids: Sequence[WalletId]
) -> set[WalletId]:
    """The lanes among `wallet_ids` with a signed request the node refused for lack of funds."""
    query = (
        select(Transaction.wallet_id)
        .join(TxAttempt, Transaction.id == TxAttempt.tx_id)
        .where(
            Transaction.chain_id == chain_id,
            one_of(session, Transaction.wallet_id, wallet_ids),
            _refused_for_funds(Transaction),
        )
        .distinct()
    )
    return set((await session.scalars(query)).all())


# ix_tx_attempts_refused's predicate (models.REFUSED_FOR_FUNDS_SQL), with the value as a
# literal: under a generic plan a bound parameter could not be proved to match the index's.
REFUSED_FOR_FUNDS = TxAttempt.last_error == literal_column("'insufficient_funds'")


def _refused_for_funds(tx: type[Transaction] | AliasedClass[Transaction]) -> ColumnElement[bool]:
    """`tx` (the table or an alias, joined to its attempts) is signed, and a node refused an
    attempt of it for lack of funds: later nonces of its lane must wait behind it."""
    return and_(tx.status == TxStatus.SIGNED, REFUSED_FOR_FUNDS)
