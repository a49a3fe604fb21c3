"""What the metrics show of a chain, read from it by the tracker's holder: the head, and each
lane's pending nonce and balance (issue 18). A scrape reads only what this stored."""

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.domain.transactions.node import ChainRpc
from chainflow.domain.wallets.models import Wallet, WalletChain
from chainflow.infra import metrics

_CHUNK = 250  # lanes per JSON-RPC batch (two calls each)
# When each chain was last read by this process (monotonic s): at most once per interval.
_last_read: dict[int, float] = {}


def is_due(chain_id: int, *, every_s: float) -> bool:
    """Whether this process last read the chain `every_s` or more ago (and now will)."""
    now = time.monotonic()
    if now - _last_read.get(chain_id, -float("inf")) < every_s:
        return False
    _last_read[chain_id] = now
    return True


async def read_chain(
    rpc: ChainRpc, chain_id: int, lanes: Sequence[tuple[str, int]]
) -> dict[str, int]:
    """Read the chain's head and these lanes' (address, next nonce) pending nonces and
    balances into the metrics; return the balances by address (wallet.low_balance reads
    them, issue 16). Raises what the RPC raises."""
    block = await rpc.call("eth_getBlockByNumber", ["latest", False])
    head = (int(block["number"], 16), float(int(block["timestamp"], 16)))
    readings: list[metrics.LaneReading] = []
    for start in range(0, len(lanes), _CHUNK):
        readings += await _read_lanes(rpc, lanes[start : start + _CHUNK])
    metrics.set_chain_reading(chain_id, head=head, lanes=readings)
    return {reading.wallet: reading.balance_wei for reading in readings}


def forget_chain(chain_id: int) -> None:
    """This process no longer holds the chain's tracker: its readings are another's now."""
    _last_read.pop(chain_id, None)
    metrics.forget_chain(chain_id)


async def lanes_of(session: AsyncSession, chain_id: int) -> list[tuple[str, int]]:
    query = (
        select(Wallet.address, WalletChain.next_nonce)
        .join(Wallet, Wallet.id == WalletChain.wallet_id)
        .where(WalletChain.chain_id == chain_id, WalletChain.enabled.is_(True))
        .order_by(Wallet.address)
    )
    return [(row.address, int(row.next_nonce)) for row in (await session.execute(query)).all()]


async def _read_lanes(rpc: ChainRpc, lanes: Sequence[tuple[str, int]]) -> list[metrics.LaneReading]:
    calls: list[tuple[str, Sequence[Any]]] = []
    for address, _ in lanes:
        calls += [
            ("eth_getTransactionCount", [address, "pending"]),
            ("eth_getBalance", [address, "latest"]),
        ]
    answers = await rpc.batch(calls)
    readings = []
    for (address, next_nonce), pending, balance in zip(
        lanes, answers[0::2], answers[1::2], strict=True
    ):
        if isinstance(pending, str) and isinstance(balance, str):
            lag = max(0, next_nonce - int(pending, 16))
            readings.append(metrics.LaneReading(address, lag, int(balance, 16)))
    return readings
