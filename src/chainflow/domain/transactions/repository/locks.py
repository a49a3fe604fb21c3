"""Every row lock on requests, through one helper and in one order.

The order is the request id. Every DB transaction that locks more than one request row takes
them by id, so two workers that meet on the same rows wait for each other instead of
deadlocking. The id, not (created_at, id) as some lockers once used: the bulk paths know only
ids, a uuid is unique and never changes, and one order only helps if every writer keeps it;
a caller that needs submission order (nonces are taken in it) sorts what it locked.

Lane rows (wallet_chains) are locked before request rows by the drains (claim and sign). The
two writers that lock a lane after a request (nonce_gaps.release_nonce, track/outcomes for a
foreign nonce) lock a *signed or sent* request, which no drain locks (drains lock queued ones),
so no wait can close a cycle with a drain.
"""

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple, TypeVarTuple, cast

from sqlalchemy import Select, Table, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from chainflow.core.types import TxHash, TxId, WalletId
from chainflow.domain.transactions.models import Transaction
from chainflow.domain.transactions.repository.queries import cap_reaches
from chainflow.domain.transactions.state import TxStatus
from chainflow.infra.db.params import one_of

_TRANSACTIONS = cast(Table, Transaction.__table__)
Row = TypeVarTuple("Row")


def for_update(query: Select[*Row]) -> Select[*Row]:
    """`query` locking its request rows in the one lock order (see the module docstring)."""
    return query.order_by(_TRANSACTIONS.c.id).with_for_update()


def _in_submission_order(rows: Sequence[Transaction]) -> list[Transaction]:
    return sorted(rows, key=lambda tx: (tx.created_at, tx.id))


async def lock_queued(session: AsyncSession, ids: Sequence[TxId]) -> list[Transaction]:
    """Lock the given requests that are still queued; in submission order."""
    query = select(Transaction).where(
        one_of(session, _TRANSACTIONS.c.id, ids), Transaction.status == TxStatus.QUEUED
    )
    return _in_submission_order((await session.scalars(for_update(query))).all())


async def lock_queued_ids(session: AsyncSession, ids: Sequence[TxId]) -> set[TxId]:
    """Lock the given requests that are still queued; their ids (a Core read: no ORM rows)."""
    t = _TRANSACTIONS.c
    query = select(t.id).where(one_of(session, t.id, ids), t.status == TxStatus.QUEUED)
    return set((await session.scalars(for_update(query))).all())


async def lock_expired_below(
    session: AsyncSession,
    chain_id: int,
    wallet_ids: Sequence[WalletId],
    *,
    now: datetime,
    min_fee_cap_wei: int | None,
) -> list[Transaction]:
    """Lock the queued requests of these lanes whose valid_until has passed and whose own fee
    cap is below `min_fee_cap_wei` (all of them when it is None); in submission order."""
    query = select(Transaction).where(
        Transaction.chain_id == chain_id,
        one_of(session, _TRANSACTIONS.c.wallet_id, wallet_ids),
        Transaction.status == TxStatus.QUEUED,
        Transaction.valid_until <= now,
    )
    if min_fee_cap_wei is not None:
        query = query.where(~cap_reaches(session, min_fee_cap_wei))
    return _in_submission_order((await session.scalars(for_update(query))).all())


async def lock_tracked(session: AsyncSession, tx_id: uuid.UUID) -> Transaction | None:
    """Lock one request, with its attempts."""
    query = (
        select(Transaction)
        .where(Transaction.id == tx_id)
        .options(selectinload(Transaction.attempts))
    )
    return (await session.scalars(for_update(query))).one_or_none()


async def lock_with_attempts(session: AsyncSession, ids: Sequence[TxId]) -> dict[TxId, Transaction]:
    """Lock these requests, with their attempts, by id."""
    query = (
        select(Transaction)
        .where(one_of(session, _TRANSACTIONS.c.id, ids))
        .options(selectinload(Transaction.attempts))
    )
    return {tx.id: tx for tx in (await session.scalars(for_update(query))).all()}


class LockedState(NamedTuple):
    status: TxStatus
    final_hash: TxHash | None
    block_hash: str | None


async def lock_states(session: AsyncSession, tx_ids: Sequence[TxId]) -> dict[TxId, LockedState]:
    """Lock these requests (a Core read: no ORM rows) and return what the bulk writers
    compare against."""
    t = _TRANSACTIONS.c
    query = select(t.id, t.status, t.final_hash, t.block_hash).where(
        one_of(session, t.id, list(dict.fromkeys(tx_ids)))
    )
    rows = (await session.execute(for_update(query))).all()
    # Unpacked, not looked up by name (a Row's lookup by name is ~20 times its index's); the
    # non-native Enum column gives the member already (TxStatus() of a member: itself).
    return {
        tx_id: LockedState(
            status if type(status) is TxStatus else TxStatus(status), final_hash, block_hash
        )
        for tx_id, status, final_hash, block_hash in rows
    }
