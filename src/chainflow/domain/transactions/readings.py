"""What the metrics show of a chain, read from it by the tracker's holder: the head, and each
lane's pending nonce and balance (issue 18). A scrape reads only what this stored."""

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.domain.transactions.node import ChainRpc
from chainflow.domain.wallets.models import Wallet, WalletChain
from chainflow.infra import metrics
from chainflow.infra.rpc.answers import quantity

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
    head = await read_head(rpc)
    readings = [
        metrics.LaneReading(lane.address, max(0, next_nonce - lane.pending_nonce), lane.balance_wei)
        for lane, (_, next_nonce) in zip(
            await read_lanes(rpc, [address for address, _ in lanes]), lanes, strict=True
        )
        if lane is not None
    ]
    metrics.set_chain_reading(chain_id, head=head, lanes=readings)
    return {reading.wallet: reading.balance_wei for reading in readings}


async def read_head(rpc: ChainRpc) -> tuple[int, float]:
    """The latest block's number and unix timestamp. Raises what the RPC raises, and
    ValueError/TypeError/KeyError on an answer that is not a block."""
    block = await rpc.call("eth_getBlockByNumber", ["latest", False])
    return quantity(block["number"], bits=63), float(quantity(block["timestamp"], bits=63))


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


@dataclass(frozen=True)
class ChainLane:
    """What a node says of one address: its pending nonce and balance."""

    address: str
    pending_nonce: int
    balance_wei: int


async def read_lanes(rpc: ChainRpc, addresses: Sequence[str]) -> list[ChainLane | None]:
    """Each address's pending nonce and balance (None where the node's answer failed), in
    JSON-RPC batches of `_CHUNK` addresses. Raises what the RPC raises."""
    found: list[ChainLane | None] = []
    for start in range(0, len(addresses), _CHUNK):
        found += await _read_chunk(rpc, addresses[start : start + _CHUNK])
    return found


async def _read_chunk(rpc: ChainRpc, addresses: Sequence[str]) -> list[ChainLane | None]:
    calls: list[tuple[str, Sequence[Any]]] = []
    for address in addresses:
        calls += [
            ("eth_getTransactionCount", [address, "pending"]),
            ("eth_getBalance", [address, "latest"]),
        ]
    answers = await rpc.batch(calls)
    return [
        ChainLane(address, quantity(pending, bits=63), quantity(balance))
        if isinstance(pending, str) and isinstance(balance, str)
        else None
        for address, pending, balance in zip(addresses, answers[0::2], answers[1::2], strict=True)
    ]
