"""The SQL of a new request: one read of chain, wallet and lane, then the inserts.

Submitting is the API's hot path, so it skips the ORM's unit of work: the row and its first
event are plain INSERTs whose values are all known here. On PostgreSQL they are one statement
(a data-modifying CTE), so a submission needs no transaction around them.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias, cast

from sqlalchemy import (
    JSON,
    ColumnElement,
    Insert,
    Select,
    Table,
    Text,
    Uuid,
    and_,
    bindparam,
    func,
    insert,
    literal,
    or_,
    select,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from chainflow.core.addresses import parse_wallet_ref
from chainflow.core.types import ChainId, TxId, WalletId
from chainflow.domain import events
from chainflow.domain.chains.models import Chain
from chainflow.domain.transactions.models import Transaction, TxEventRow
from chainflow.domain.transactions.rows import (
    REQUEST_COLUMNS,
    EventRow,
    NewRequest,
    created_row,
    request_row,
)
from chainflow.domain.transactions.snapshots import queued_snapshot
from chainflow.domain.transactions.state import TxKind, TxStatus
from chainflow.domain.transactions.telemetry import record_transition
from chainflow.domain.wallets.models import Wallet, WalletChain, WalletStatus
from chainflow.infra.db.bulk import array_of
from chainflow.infra.db.bulk import plain_value as _plain
from chainflow.infra.db.engine import dumps_json

_TRANSACTIONS = cast(Table, Transaction.__table__)
_EVENTS = cast(Table, TxEventRow.__table__)
_OUTBOX = events.EVENTS
_QUEUED_TYPE = f"transaction.{TxStatus.QUEUED.value}"


@dataclass(frozen=True)
class Target:
    """What a submission is checked against; wallet fields are None for an unknown wallet."""

    chain_id: ChainId
    chain_enabled: bool
    max_fee_per_gas_cap: int | None
    max_priority_fee_per_gas_cap: int | None
    wallet_id: WalletId | None
    wallet_address: str | None
    wallet_status: WalletStatus | None
    lane_enabled: bool
    has_policy: bool = False


@dataclass(frozen=True)
class Earlier:
    """The request stored under an idempotency key: enough to tell a retry from a reuse."""

    id: TxId
    request_hash: str


# Where the statements below run: a session, or a bare connection, which costs less CPU per
# statement (no ORM unit of work around it).
Executor: TypeAlias = AsyncSession | AsyncConnection

_CHAINS = cast(Table, Chain.__table__).c
_WALLETS = cast(Table, Wallet.__table__).c
_LANES = cast(Table, WalletChain.__table__).c


def _target_query(wallet_match: ColumnElement[bool]) -> Select[Any]:
    # Built once, from table columns: building the query per request and the ORM's compile
    # step cost more CPU than the round trip.
    return (
        select(
            _CHAINS.chain_id,
            _CHAINS.enabled,
            _CHAINS.max_fee_per_gas_cap,
            _CHAINS.max_priority_fee_per_gas_cap,
            _WALLETS.id,
            _WALLETS.address,
            _WALLETS.status,
            _LANES.enabled,
            _WALLETS.has_policy,
        )
        .select_from(Chain.__table__)
        .outerjoin(Wallet.__table__, wallet_match)
        .outerjoin(
            WalletChain.__table__,
            and_(_LANES.wallet_id == _WALLETS.id, _LANES.chain_id == _CHAINS.chain_id),
        )
        .where(_CHAINS.chain_id == bindparam("chain_id"))
    )


_TARGET_BY_ADDRESS = _target_query(_WALLETS.address == bindparam("address"))
_TARGET_BY_ID = _target_query(_WALLETS.id == bindparam("wallet_id"))


async def find_target(db: Executor, chain_id: int, wallet_ref: str) -> Target | None:
    """The chain, the wallet (by id or address) and its lane there, in one query; None when
    the chain is not in the registry."""
    parsed = parse_wallet_ref(wallet_ref)  # the body's schema refused a malformed address
    if isinstance(parsed, uuid.UUID):
        query, params = _TARGET_BY_ID, {"chain_id": chain_id, "wallet_id": parsed}
    else:  # neither id nor address: no wallet has an empty address
        query, params = _TARGET_BY_ADDRESS, {"chain_id": chain_id, "address": parsed or ""}
    row = (await db.execute(query, params)).one_or_none()
    if row is None:
        return None
    return Target(
        chain_id=row[0],
        chain_enabled=row[1],
        max_fee_per_gas_cap=row[2],
        max_priority_fee_per_gas_cap=row[3],
        wallet_id=row[4],
        wallet_address=row[5],
        wallet_status=row[6],
        lane_enabled=bool(row[7]),
        has_policy=bool(row[8]),
    )


_EARLIER = select(_TRANSACTIONS.c.id, _TRANSACTIONS.c.request_hash).where(
    _TRANSACTIONS.c.api_key_id == bindparam("api_key_id"),
    _TRANSACTIONS.c.idempotency_key == bindparam("key"),
)


async def find_earlier(db: Executor, api_key_id: uuid.UUID | None, key: str) -> Earlier | None:
    """The request this API key stored under this idempotency key, if any."""
    row = (await db.execute(_EARLIER, {"api_key_id": api_key_id, "key": key})).one_or_none()
    return None if row is None else Earlier(row[0], row[1])


async def is_stored(db: Executor, tx_id: TxId) -> bool:
    """Whether a request with this id is stored (a group commit whose answer was lost)."""
    found = await db.execute(select(_TRANSACTIONS.c.id).where(_TRANSACTIONS.c.id == tx_id))
    return found.first() is not None


# What the event rows of a stored request are made from.
_STORED = (
    _TRANSACTIONS.c.id,
    _TRANSACTIONS.c.status,
    _TRANSACTIONS.c.created_at,
    _TRANSACTIONS.c.wallet_id,
    _TRANSACTIONS.c.chain_id,
)
# A request whose idempotency key is taken inserts nothing (ON CONFLICT DO NOTHING) rather
# than raising: the caller then reads the earlier request, with no savepoint to roll back to.
_NEW_TX = (
    postgresql.insert(_TRANSACTIONS)
    .values({name: bindparam(name) for name in REQUEST_COLUMNS})
    .on_conflict_do_nothing()
    .returning(*_STORED)
    .cte("new_tx")
)
_NEW_LOG = (
    insert(_EVENTS)
    .from_select(
        ["tx_id", "to_status", "at"],
        select(_NEW_TX.c.id, _NEW_TX.c.status, _NEW_TX.c.created_at),
    )
    .returning(_EVENTS.c.tx_id)
    .cte("new_log")
)
# ... and its `transaction.queued` in the outbox (issue 16), in the same statement.
_PG_INSERT: Insert = (
    insert(_OUTBOX)
    .from_select(
        ["event_id", "type", "tx_id", "wallet_id", "chain_id", "data", "created_at"],
        select(
            bindparam("ev_event_id", type_=Uuid),
            literal(_QUEUED_TYPE),
            _NEW_TX.c.id,
            _NEW_TX.c.wallet_id,
            _NEW_TX.c.chain_id,
            bindparam("ev_data", type_=JSON),
            _NEW_TX.c.created_at,
        ),
    )
    .add_cte(_NEW_LOG)
    .returning(_OUTBOX.c.tx_id)
)
_SQLITE_INSERT = sqlite.insert(_TRANSACTIONS).on_conflict_do_nothing().returning(_TRANSACTIONS.c.id)


async def insert_request(db: Executor, request: NewRequest) -> bool:
    """Store the request and its `created` event; False, storing nothing, when its idempotency
    key is already taken. One statement on PostgreSQL (atomic without a transaction)."""
    row = request_row(request)
    if _dialect_name(db) == "postgresql":
        event = {"ev_event_id": uuid.uuid4(), "ev_data": _queued_data(request)}
        stored = (await db.execute(_PG_INSERT, row | event)).first() is not None
    elif (await db.execute(_SQLITE_INSERT, row)).first() is None:
        stored = False
    else:
        await db.execute(insert(_EVENTS), _created_event(request))
        await events.append_many(db, [_queued_event(request)])
        stored = True
    if stored:
        record_transition(request.chain_id, None, request.status.value)  # metrics (issue 18)
    return stored


def _grouped_insert() -> Insert:
    """insert_request's statement for many requests: every column as one array, unnested; the
    requests whose idempotency key is taken insert nothing, the others their `created` event
    and their `transaction.queued` outbox event, all in one statement."""
    columns = [
        bindparam(f"r_{name}", type_=array_of(_TRANSACTIONS.c[name].type))
        for name in REQUEST_COLUMNS
    ]
    given = func.unnest(*columns).table_valued(*REQUEST_COLUMNS).render_derived(name="r")
    new_tx = (
        postgresql.insert(_TRANSACTIONS)
        .from_select(list(REQUEST_COLUMNS), _still_admissible(given))
        .on_conflict_do_nothing()
        .returning(*_STORED)
        .cte("new_tx")
    )
    new_log = (
        insert(_EVENTS)
        .from_select(
            ["tx_id", "to_status", "at"], select(new_tx.c.id, new_tx.c.status, new_tx.c.created_at)
        )
        .returning(_EVENTS.c.tx_id)
        .cte("new_log")
    )
    outbox = func.unnest(
        bindparam("e_event_id", type_=ARRAY(Uuid())),
        bindparam("e_tx_id", type_=ARRAY(Uuid())),
        bindparam("e_data", type_=ARRAY(Text())),
    )
    ev = outbox.table_valued("event_id", "tx_id", "data").render_derived(name="e")
    return (
        insert(_OUTBOX)
        .from_select(
            ["event_id", "type", "tx_id", "wallet_id", "chain_id", "data", "created_at"],
            select(
                ev.c.event_id,
                literal(_QUEUED_TYPE),
                new_tx.c.id,
                new_tx.c.wallet_id,
                new_tx.c.chain_id,
                sql_cast(ev.c.data, JSON),
                new_tx.c.created_at,
            ).select_from(new_tx.join(ev, ev.c.tx_id == new_tx.c.id)),
        )
        .add_cte(new_log)
        .returning(_OUTBOX.c.tx_id)
    )


def _under(value: ColumnElement[Any], cap: ColumnElement[Any]) -> ColumnElement[bool]:
    return or_(cap.is_(None), value.is_(None), value <= cap)


def _still_admissible(given: Any) -> Select[Any]:
    """The given rows whose chain, wallet and lane still admit them when the statement runs:
    the checks of admission.checked_target, re-run against the rows the group's statement sees, so a
    request checked against a remembered target (domain/transactions/targets.py) is stored
    only if that target still holds: chain enabled, wallet active at the same address with
    no spending policy, lane enabled, fees within the chain's caps. A request refused here is
    not stored, and its caller checks it again on its own (service.submit)."""
    r = given.c
    return (
        select(*(r[name] for name in REQUEST_COLUMNS))
        .select_from(given)
        .join(Chain.__table__, and_(_CHAINS.chain_id == r.chain_id, _CHAINS.enabled))
        .join(
            Wallet.__table__,
            and_(
                _WALLETS.id == r.wallet_id,
                _WALLETS.address == r.from_address,
                _WALLETS.status == WalletStatus.ACTIVE,
                ~_WALLETS.has_policy,
            ),
        )
        .join(
            WalletChain.__table__,
            and_(_LANES.wallet_id == r.wallet_id, _LANES.chain_id == r.chain_id, _LANES.enabled),
        )
        .where(
            _under(r.max_fee_per_gas_cap, _CHAINS.max_fee_per_gas_cap),
            _under(r.max_priority_fee_per_gas_cap, _CHAINS.max_priority_fee_per_gas_cap),
        )
    )


_PG_GROUPED_INSERT = _grouped_insert()


async def insert_grouped(db: AsyncConnection, requests: Sequence[NewRequest]) -> set[TxId]:
    """insert_request for many requests in one statement (PostgreSQL, atomic on its own): the
    ids of those stored; each of the others had its idempotency key taken (by a stored
    request, or by an earlier one of `requests`), or its chain, wallet or lane no longer
    admits it (_still_admissible)."""
    params: dict[str, object] = {
        f"r_{name}": [_plain(getattr(request, name)) for request in requests]
        for name in REQUEST_COLUMNS
    }
    params["e_event_id"] = [uuid.uuid4() for _ in requests]
    params["e_tx_id"] = [request.id for request in requests]
    params["e_data"] = [dumps_json(_queued_data(request)) for request in requests]
    stored = {row[0] for row in await db.execute(_PG_GROUPED_INSERT, params)}
    for request in requests:
        if request.id in stored:
            record_transition(request.chain_id, None, request.status.value)  # metrics
    return stored


def is_transactional(db: Executor) -> bool:
    """Whether `db` runs in a DB transaction (not a PostgreSQL connection in autocommit,
    where a lock would end with its statement)."""
    if isinstance(db, AsyncSession):
        return True
    # Not yet connected (single_statements' first statement connects it): its engine's.
    connected = db.sync_connection
    options = (connected or db.engine).get_execution_options()
    return options.get("isolation_level") != "AUTOCOMMIT"


# The value a wallet has sent, or may still send, on a chain since a moment: requests that
# ended without executing (failed, cancelled, expired) release theirs (issue 21). A reverted
# request spent its value's gas and may have moved it: it stays counted.
_RELEASED = (TxStatus.FAILED, TxStatus.CANCELLED, TxStatus.EXPIRED)
_COUNTED = (
    _TRANSACTIONS.c.wallet_id == bindparam("wallet_id"),
    _TRANSACTIONS.c.chain_id == bindparam("chain_id"),
    _TRANSACTIONS.c.created_at > bindparam("since"),
    _TRANSACTIONS.c.kind == TxKind.REQUEST,
    _TRANSACTIONS.c.status.not_in(_RELEASED),
)
_SPENT_SUM = select(func.sum(_TRANSACTIONS.c.value_wei)).where(*_COUNTED)
_SPENT_VALUES = select(_TRANSACTIONS.c.value_wei).where(*_COUNTED)


async def value_since(db: Executor, wallet_id: WalletId, chain_id: int, since: datetime) -> int:
    """The value of the wallet's requests on the chain admitted after `since` and not
    released. SQLite keeps wei as text, whose SUM would lose digits: summed here."""
    params = {"wallet_id": wallet_id, "chain_id": chain_id, "since": since}
    if _dialect_name(db) == "postgresql":
        total = (await db.execute(_SPENT_SUM, params)).scalar_one()
        return int(total or 0)
    return sum(int(value) for value in (await db.execute(_SPENT_VALUES, params)).scalars())


def _dialect_name(db: Executor) -> str:
    if isinstance(db, AsyncConnection):
        return db.dialect.name
    return db.bind.dialect.name if db.bind is not None else ""


async def insert_requests(session: AsyncSession, requests: Sequence[NewRequest]) -> None:
    """insert_request for many, two statements in all."""
    await session.execute(insert(_TRANSACTIONS), [request_row(request) for request in requests])
    await session.execute(insert(_EVENTS), [_created_event(request) for request in requests])
    await events.append_many(session, [_queued_event(request) for request in requests])


def count_created(requests: Sequence[NewRequest]) -> None:
    """Count stored requests in the metrics (the caller knows they were stored: a savepoint
    that lost an idempotency race stored none)."""
    for request in requests:
        record_transition(request.chain_id, None, request.status.value)  # metrics (issue 18)


def _created_event(request: NewRequest) -> EventRow:
    return created_row(request.id, request.status, request.created_at)


def _queued_data(request: NewRequest) -> dict[str, Any]:
    return {"transaction": queued_snapshot(request), "previous_status": None}


def _queued_event(request: NewRequest) -> events.NewEvent:
    return events.new_event(
        _QUEUED_TYPE,
        data=_queued_data(request),
        tx_id=request.id,
        wallet_id=request.wallet_id,
        chain_id=request.chain_id,
        at=request.created_at,
    )
