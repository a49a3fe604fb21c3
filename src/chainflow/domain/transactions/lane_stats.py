"""Pending work per lane, read in two queries for the metrics (never an RPC): issue 18."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.domain.transactions.models import Transaction
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.wallets.models import Wallet, WalletChain

_TRANSACTIONS = cast(Table, Transaction.__table__)
_PENDING = (TxStatus.QUEUED, TxStatus.SIGNED, TxStatus.SUBMITTED, TxStatus.MINED)


@dataclass
class LaneStats:
    chain_id: int
    wallet: str  # address
    queued: int = 0
    in_flight: int = 0  # signed, submitted or mined (not yet final)
    oldest_pending_at: datetime | None = None
    wallet_id: uuid.UUID | None = None
    next_nonce: int = 0
    label: str | None = None
    wallet_status: str = "active"
    paused_reason: str | None = None  # why the engine cannot sign for it (wallets' lanes)


async def lane_stats(session: AsyncSession) -> list[LaneStats]:
    """Every enabled lane with its queued and in-flight counts and oldest pending request."""
    lanes_query = (
        select(
            WalletChain.chain_id,
            WalletChain.wallet_id,
            WalletChain.next_nonce,
            Wallet.address,
            Wallet.label,
            Wallet.status,
            WalletChain.paused_reason,
        )
        .join(Wallet, Wallet.id == WalletChain.wallet_id)
        .where(WalletChain.enabled.is_(True))
    )
    lanes: dict[tuple[int, uuid.UUID], LaneStats] = {
        (row.chain_id, row.wallet_id): LaneStats(
            row.chain_id,
            row.address,
            wallet_id=row.wallet_id,
            next_nonce=int(row.next_nonce),
            label=row.label,
            wallet_status=str(row.status),
            paused_reason=row.paused_reason,
        )
        for row in (await session.execute(lanes_query)).all()
    }
    if not lanes:
        return []
    for row in await _pending(session, sorted({chain_id for chain_id, _ in lanes})):
        stats = lanes.get((row.chain_id, row.wallet_id))
        if stats is None:
            continue  # a disabled lane: not reported
        if TxStatus(row.status) is TxStatus.QUEUED:
            stats.queued += row.count
        else:
            stats.in_flight += row.count
        if stats.oldest_pending_at is None or row.oldest < stats.oldest_pending_at:
            stats.oldest_pending_at = row.oldest
    return list(lanes.values())


async def status_counts(session: AsyncSession, *, since: datetime) -> dict[TxStatus, int]:
    """Requests created at or after `since`, counted by their status now (every status, 0
    included). One query on the created_at index."""
    t = _TRANSACTIONS.c
    query = (
        select(t.status, func.count().label("total"))
        .where(t.created_at >= since)
        .group_by(t.status)
    )
    counts = dict.fromkeys(TxStatus, 0)
    for row in (await session.execute(query)).all():
        counts[TxStatus(row.status)] = int(row.total)
    return counts


async def _pending(session: AsyncSession, chain_ids: list[int]) -> list[Any]:
    # chain_id first, so that ix_transactions_chain_status serves it without a scan of the
    # final requests, which are most of the table.
    t = _TRANSACTIONS.c
    query = (
        select(
            t.chain_id,
            t.wallet_id,
            t.status,
            func.count().label("count"),
            func.min(t.created_at).label("oldest"),
        )
        .where(t.chain_id.in_(chain_ids), t.status.in_([s.value for s in _PENDING]))
        .group_by(t.chain_id, t.wallet_id, t.status)
    )
    return list((await session.execute(query)).all())
