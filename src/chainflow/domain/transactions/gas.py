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
from chainflow.domain.transactions.runtime import ChainRpc, Engine

_TTL_S = 1.0


def chain_caps(chain: ChainConfig) -> FeeCaps:
    return FeeCaps(chain.max_fee_per_gas_cap, chain.max_priority_fee_per_gas_cap)


async def market(engine: Engine, chain: ChainConfig) -> Market:
    """Fees a new transaction should carry now, before request caps, and the next block's
    base fee; cached for 1 s per engine."""
    cached = engine.fee_cache.get(chain.chain_id)
    now = time.monotonic()
    if cached is not None and now - cached[0] < _TTL_S:
        return cached[1]
    found = await _fetch(engine.rpc[chain.chain_id], chain, min_tip_wei=engine.config.min_tip_wei)
    engine.fee_cache[chain.chain_id] = (now, found)
    return found


async def market_fees(engine: Engine, chain: ChainConfig) -> Fees:
    """Fees a new transaction should carry now, before request caps (see `market`)."""
    return (await market(engine, chain)).fees


async def _fetch(rpc: ChainRpc, chain: ChainConfig, *, min_tip_wei: int) -> Market:
    if not chain.eip1559:
        return Market(suggest_legacy(gas_price_wei=int(await rpc.call("eth_gasPrice"), 16)))
    history = await rpc.call("eth_feeHistory", [5, "latest", [50]])
    next_base_fee = int(history["baseFeePerGas"][-1], 16)
    tips = [int(row[0], 16) for row in history.get("reward") or [] if row]
    fees = suggest_eip1559(
        next_base_fee_wei=next_base_fee, tip_samples_wei=tips, min_tip_wei=min_tip_wei
    )
    return Market(fees, next_base_fee)
