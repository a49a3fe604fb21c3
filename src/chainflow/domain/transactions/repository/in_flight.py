"""The reads of what a chain has in flight: requests between signing and finality (no
locks: locks.py takes them)."""

import functools
import uuid
from collections.abc import Callable, Sequence
from typing import Any, cast

from sqlalchemy import Integer, Row, Select, Table, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.types import TxId, WalletId
from chainflow.domain.transactions.models import Transaction, TxAttempt
from chainflow.domain.transactions.rows import (
    IN_FLIGHT_ATTEMPT_COLUMNS,
    IN_FLIGHT_COLUMNS,
    InFlight,
    InFlightAttempt,
)
from chainflow.domain.transactions.state import TxStatus
from chainflow.infra.db.params import one_of

TRACKED = (TxStatus.SIGNED, TxStatus.SUBMITTED, TxStatus.MINED)
_TRANSACTIONS = cast(Table, Transaction.__table__)
_ATTEMPTS = cast(Table, TxAttempt.__table__)
_REQUEST_WIDTH = len(IN_FLIGHT_COLUMNS)
# InFlight from a row's request columns in order, then its attempts (mypy cannot count a slice).
_in_flight = cast(Callable[..., InFlight], InFlight)


async def count_in_flight(session: AsyncSession, wallet_id: uuid.UUID, chain_id: int) -> int:
    """Requests of one lane signed or sent and not yet seen mined."""
    query = select(func.count()).where(
        Transaction.chain_id == chain_id,
        Transaction.wallet_id == wallet_id,
        Transaction.status.in_((TxStatus.SIGNED, TxStatus.SUBMITTED)),
    )
    return int(await session.scalar(query) or 0)


async def lanes_in_flight(
    session: AsyncSession, chain_id: int, wallet_ids: Sequence[WalletId]
) -> set[WalletId]:
    """The lanes among `wallet_ids` with a request in flight (signed, submitted or mined):
    what `tracked` says of lanes its page cut off."""
    query = (
        select(Transaction.wallet_id)
        .where(
            Transaction.chain_id == chain_id,
            one_of(session, Transaction.wallet_id, wallet_ids),
            Transaction.status.in_(TRACKED),
        )
        .distinct()
    )
    return {WalletId(w) for w in (await session.scalars(query)).all()}


async def tracked(session: AsyncSession, chain_id: int, *, limit: int) -> list[InFlight]:
    """Requests between signing and finality, with their attempts, lowest nonce first: one
    Core statement (the page of requests joined to their attempts), no ORM instances."""
    query = _tracked_query()
    grouped: dict[TxId, tuple[Row[Any], list[InFlightAttempt]]] = {}
    for row in await session.execute(query, {"chain_id": chain_id, "limit": limit}):
        entry = grouped.get(row[0])
        if entry is None:
            entry = grouped[row[0]] = (row, [])
        if row[_REQUEST_WIDTH] is not None:  # the attempt's id: None when it has none
            entry[1].append(InFlightAttempt(*row[_REQUEST_WIDTH:]))
    return [_in_flight(*row[:_REQUEST_WIDTH], tuple(one)) for row, one in grouped.values()]


@functools.cache
def _tracked_query() -> Select[Any]:
    """tracked's statement, built once with its chain and limit as parameters: building it
    and its cache key was ~2 ms of the tracker's CPU per pass (docs/performance.md item 42)."""
    t, a = _TRANSACTIONS.c, _ATTEMPTS.c
    page = (
        select(*(t[name] for name in IN_FLIGHT_COLUMNS))
        .where(t.chain_id == bindparam("chain_id"), t.status.in_(TRACKED))
        .order_by(t.wallet_id, t.nonce)
        .limit(bindparam("limit", type_=Integer))
        .subquery("page")
    )
    return (
        select(
            *(page.c[name] for name in IN_FLIGHT_COLUMNS),
            *(a[name].label(f"a_{name}") for name in IN_FLIGHT_ATTEMPT_COLUMNS),
        )
        .select_from(page.outerjoin(_ATTEMPTS, a.tx_id == page.c.id))
        .order_by(page.c.wallet_id, page.c.nonce, page.c.id, a.created_at, a.id)
    )
