"""What the chain shows of the requests in flight: head, nonce counts, receipts, and whether
the node still holds, or parks in its pool's queued set, a possibly stranded attempt; read in
batches, no DB (workers/track.py)."""

import asyncio
from collections.abc import Sequence
from typing import cast

from chainflow.core.clock import utcnow
from chainflow.domain.transactions.config import ChainConfig
from chainflow.domain.transactions.decisions import (
    Observed,
    Receipt,
    latest_attempt,
    may_be_mined,
    may_be_stranded,
    may_be_stuck_by_blocks,
)
from chainflow.domain.transactions.market import FeeCache
from chainflow.domain.transactions.node import ChainRpc, mined_counts_at, nonce_counts
from chainflow.domain.transactions.rows import InFlight
from chainflow.domain.transactions.track.pool import PoolSupport, parked
from chainflow.infra.rpc.answers import quantity
from chainflow.infra.rpc.client import RpcCallError, RpcTransportError

_CHUNK = 500


async def observe(
    rpc: ChainRpc,
    rows: Sequence[InFlight],
    *,
    resend_after_s: float = 0.0,
    stuck_after_blocks: int | None = None,
    base_fee_wei: int | None = None,
    pool: PoolSupport | None = None,
) -> Observed:
    """Mined nonce counts first, then receipts: a count above a nonce with no receipt of ours
    then really means another transaction took that nonce. With `stuck_after_blocks`, also
    the mined counts that many blocks back of the wallets with an attempt sent that long ago,
    read alongside the current ones (is_stuck counts its blocks from the previous nonce's).
    With `pool` (what the chain's node is known to answer), also which possibly stranded
    attempts its pool lists as queued (track/pool.py), read alongside the held hashes."""
    head = quantity(await rpc.call("eth_blockNumber"), bits=63)
    addresses = sorted({tx.from_address for tx in rows})
    (latest, pending), blocks_ago = await asyncio.gather(
        nonce_counts(rpc, addresses), _counts_blocks_ago(rpc, rows, head, stuck_after_blocks)
    )
    now = utcnow()
    hashes = [
        attempt.hash
        for tx in rows
        if may_be_mined(tx, latest, now=now, resend_after_s=resend_after_s)
        for attempt in tx.attempts
    ]
    receipts: dict[str, Receipt] = {}
    for start in range(0, len(hashes), _CHUNK):
        chunk = hashes[start : start + _CHUNK]
        answers = await rpc.batch([("eth_getTransactionReceipt", [h]) for h in chunk])
        found = zip(chunk, answers, strict=True)
        receipts |= {h: cast(Receipt, r) for h, r in found if isinstance(r, dict)}
    suspects = [tx for tx in rows if may_be_stranded(tx, latest, pending)]
    held, queued = await asyncio.gather(
        _held(rpc, suspects),
        parked(rpc, suspects, pool) if pool is not None else _nothing(),
    )
    return Observed(
        head=head,
        latest_nonce=latest,
        receipts=receipts,
        pending_nonce=pending,
        held=held,
        base_fee_wei=base_fee_wei,
        nonce_blocks_ago=blocks_ago,
        parked=queued,
    )


async def _nothing() -> frozenset[str]:
    return frozenset()


async def _counts_blocks_ago(
    rpc: ChainRpc, rows: Sequence[InFlight], head: int, stuck_after_blocks: int | None
) -> dict[str, int]:
    """The mined counts at head - stuck_after_blocks of the wallets it may decide a bump for
    (one call per wallet; none in a round where no attempt is that old). A node that cannot
    answer leaves them unknown: is_stuck then counts from the send alone, and the round fails
    on the current counts read beside these, not here."""
    if stuck_after_blocks is None:
        return {}
    late = sorted(
        {
            tx.from_address
            for tx in rows
            if may_be_stuck_by_blocks(tx, head=head, stuck_after_blocks=stuck_after_blocks)
        }
    )
    try:
        return await mined_counts_at(rpc, late, head - stuck_after_blocks)
    except (RpcCallError, RpcTransportError):
        return {}


async def base_fee(fees: FeeCache, rpc: ChainRpc, chain: ChainConfig) -> int | None:
    """The next block's base fee, None if unknown: only priced-out cancels wait for it."""
    try:
        return (await fees.market(rpc, chain)).base_fee_wei
    except (RpcCallError, RpcTransportError):
        return None


async def _held(rpc: ChainRpc, suspects: Sequence[InFlight]) -> frozenset[str]:
    """Which of these requests' latest attempts the node still returns by hash (at most one
    request per wallet: the one holding its next nonce; usually none)."""
    if not suspects:
        return frozenset()
    hashes = [latest_attempt(tx).hash for tx in suspects]
    answers = await rpc.batch([("eth_getTransactionByHash", [h]) for h in hashes])
    return frozenset(h for h, found in zip(hashes, answers, strict=True) if isinstance(found, dict))
