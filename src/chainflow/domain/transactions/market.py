"""Market fees for a chain from the node (eth_feeHistory or eth_gasPrice), cached briefly."""

import time

from chainflow.domain.transactions.config import ChainConfig
from chainflow.domain.transactions.fees import (
    FeeCaps,
    Fees,
    Market,
    suggest_eip1559,
    suggest_legacy,
)
from chainflow.domain.transactions.node import ChainRpc
from chainflow.infra.rpc.answers import quantity

_TTL_S = 1.0


def chain_caps(chain: ChainConfig) -> FeeCaps:
    return FeeCaps(chain.max_fee_per_gas_cap, chain.max_priority_fee_per_gas_cap)


class FeeCache:
    """Market fees per chain, read from the node at most once a second per process (state a
    worker process keeps between rounds)."""

    def __init__(self, *, min_tip_wei: int) -> None:
        self.min_tip_wei = min_tip_wei
        self._read: dict[int, tuple[float, Market]] = {}

    async def market(self, rpc: ChainRpc, chain: ChainConfig) -> Market:
        """Fees a new transaction should carry now, before request caps, and the next
        block's base fee."""
        cached = self._read.get(chain.chain_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < _TTL_S:
            return cached[1]
        found = await _fetch(rpc, chain, min_tip_wei=self.min_tip_wei)
        self._read[chain.chain_id] = (now, found)
        return found

    async def fees(self, rpc: ChainRpc, chain: ChainConfig) -> Fees:
        """Fees a new transaction should carry now, before request caps (see `market`)."""
        return (await self.market(rpc, chain)).fees

    def last(self, chain_id: int) -> Market | None:
        """The last market read on this chain, however old; None before the first."""
        cached = self._read.get(chain_id)
        return cached[1] if cached is not None else None


async def _fetch(rpc: ChainRpc, chain: ChainConfig, *, min_tip_wei: int) -> Market:
    if not chain.eip1559:
        return Market(suggest_legacy(gas_price_wei=quantity(await rpc.call("eth_gasPrice"))))
    history = await rpc.call("eth_feeHistory", [5, "latest", [50]])
    next_base_fee = quantity(history["baseFeePerGas"][-1])
    tips = [quantity(row[0]) for row in history.get("reward") or [] if row]
    fees = suggest_eip1559(
        next_base_fee_wei=next_base_fee, tip_samples_wei=tips, min_tip_wei=min_tip_wei
    )
    return Market(fees, next_base_fee)
