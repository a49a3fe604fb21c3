"""`wallet.low_balance` (issue 16): per lane, a threshold; the event fires once each time the
balance is seen crossing below it, and re-arms once it is seen at or above it again.

Fed with the balances the tracker's holder already reads for the metrics (readings.py, every
few seconds per chain): never an RPC of its own.
"""

from collections.abc import Mapping
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.clock import utcnow
from chainflow.core.types import ChainId, WalletId, Wei
from chainflow.domain import events
from chainflow.domain.wallets.models import Wallet, WalletChain

LOW_BALANCE = "wallet.low_balance"
_LANES = cast(Table, WalletChain.__table__)


async def note_balances(session: AsyncSession, chain_id: int, balances: Mapping[str, int]) -> int:
    """Compare these balances (by address) with the chain's thresholds; append an event for
    each lane that crossed below its own and flip the lanes that crossed; return how many
    events. One SELECT, and writes only for lanes that crossed."""
    if not balances:
        return 0
    query = (
        select(
            WalletChain.wallet_id,
            WalletChain.low_balance_wei,
            WalletChain.low_balance_alerted,
            Wallet.address,
        )
        .join(Wallet, Wallet.id == WalletChain.wallet_id)
        .where(WalletChain.chain_id == chain_id, WalletChain.low_balance_wei.is_not(None))
    )
    flips: list[dict[str, object]] = []
    fired: list[events.NewEvent] = []
    now = utcnow()
    for lane in (await session.execute(query)).all():
        balance = balances.get(lane.address)
        if balance is None or lane.low_balance_wei is None:
            continue  # not read this time
        below = balance < lane.low_balance_wei
        if below == lane.low_balance_alerted:
            continue
        flips.append({"b_wallet_id": lane.wallet_id, "b_alerted": below})
        if below:
            fired.append(
                _event(
                    lane.wallet_id,
                    chain_id,
                    lane.address,
                    balance=balance,
                    threshold=lane.low_balance_wei,
                    at=now,
                )
            )
    if flips:
        await session.execute(
            update(_LANES)
            .where(_LANES.c.wallet_id == bindparam("b_wallet_id"), _LANES.c.chain_id == chain_id)
            .values(low_balance_alerted=bindparam("b_alerted")),
            flips,
        )
    await events.append_many(session, fired)
    return len(fired)


def _event(
    wallet_id: WalletId, chain_id: int, address: str, *, balance: int, threshold: int, at: datetime
) -> events.NewEvent:
    return events.new_event(
        LOW_BALANCE,
        data={
            "wallet_id": str(wallet_id),
            "address": address,
            "chain_id": chain_id,
            "balance_wei": str(balance),
            "low_balance_wei": str(threshold),
        },
        wallet_id=wallet_id,
        chain_id=ChainId(chain_id),
        at=at,
    )


def set_threshold(lane: WalletChain, threshold_wei: int | None) -> None:
    """Set (None: turn off) the lane's threshold; a new threshold is judged afresh at the
    next reading."""
    if lane.low_balance_wei != threshold_wei:
        lane.low_balance_wei = None if threshold_wei is None else Wei(threshold_wei)
        lane.low_balance_alerted = False
