"""Why a mined transaction reverted: asked of the node once, when its receipt (status 0) is
final, so that `error.message` carries the contract's reason (issue 19: a swap that passed its
estimate and reverted on chain said only "reverted").

Measured on anvil 1.7.1 with a Uniswap V2 swap whose pool another transaction moved earlier in
the same block: `debug_traceTransaction` with the call tracer (top call only) re-executes the
block up to the transaction and returns its revert data (`output`) or its failure (`error`,
e.g. "out of gas"), exactly as mined. An `eth_call` of the same call at the parent block did
NOT revert there: it misses what earlier transactions of the block changed. So the trace comes
first; the replay is the fallback for nodes without the debug namespace (most hosted
endpoints), and a replay that does not revert says so rather than guess. Both are bounded:
LOOKUP_S per transaction, MAX_PER_ROUND per tracking round, REASON_MAX characters kept.
"""

import asyncio
from collections.abc import Sequence
from typing import Any

from chainflow.core.errors import Unavailable
from chainflow.core.types import TxId
from chainflow.domain.transactions.decisions import Decision
from chainflow.domain.transactions.node import ChainRpc
from chainflow.domain.transactions.rows import InFlight
from chainflow.infra.rpc.answers import quantity
from chainflow.infra.rpc.client import RpcCallError
from chainflow.infra.rpc.errors import RpcErrorKind, RpcFailure, classify, revert_reason

LOOKUP_S = 3.0
MAX_PER_ROUND = 16
REASON_MAX = 300
_TRACER = {"tracer": "callTracer", "tracerConfig": {"onlyTopCall": True}}


def reverted(rows: Sequence[InFlight], decisions: dict[TxId, Decision]) -> list[InFlight]:
    """The requests this round finalises as reverted (a receipt with status 0, not a cancel)."""
    return [tx for tx in rows if decisions[tx.id].is_final_revert]


async def revert_reasons(
    rpc: ChainRpc, rows: Sequence[InFlight], decisions: dict[TxId, Decision]
) -> dict[TxId, str]:
    """The node's reason for each request finalised as reverted in this round (at most
    MAX_PER_ROUND, each within LOOKUP_S); a request whose reason is not found is absent."""
    wanted = reverted(rows, decisions)[:MAX_PER_ROUND]
    if not wanted:
        return {}
    found = await asyncio.gather(*(_bounded(rpc, tx, decisions[tx.id]) for tx in wanted))
    return {tx.id: reason for tx, reason in zip(wanted, found, strict=True) if reason}


async def _bounded(rpc: ChainRpc, tx: InFlight, decision: Decision) -> str | None:
    try:
        async with asyncio.timeout(LOOKUP_S):
            reason = await _reason(rpc, tx, decision)
    except (TimeoutError, Unavailable):  # the node is slow or unreachable: no reason
        return None
    return reason[:REASON_MAX] if reason else None


async def _reason(rpc: ChainRpc, tx: InFlight, decision: Decision) -> str | None:
    assert decision.attempt is not None  # noqa: S101 - reverted() keeps attempts only
    assert decision.receipt is not None  # noqa: S101
    try:
        trace = await rpc.call("debug_traceTransaction", [decision.attempt.hash, _TRACER])
    except RpcCallError:
        trace = None  # no debug namespace here: replay the call instead
    if isinstance(trace, dict):
        return reason_from_trace(trace)
    block = quantity(decision.receipt["blockNumber"], bits=63)
    return await _replayed(rpc, tx, gas_limit=decision.attempt.gas_limit, block=block)


def reason_from_trace(trace: dict[str, Any]) -> str | None:
    reason = revert_reason(RpcFailure(data=trace.get("output")))
    if reason:
        return reason
    error = trace.get("error")
    if not isinstance(error, str):
        return None
    custom = trace.get("output")
    if isinstance(custom, str) and len(custom) > 2 and error == "execution reverted":
        return f"{error} with custom error data {custom[:74]}"  # its selector and a little
    return error


async def _replayed(rpc: ChainRpc, tx: InFlight, *, gas_limit: int, block: int) -> str | None:
    call = {
        "from": tx.from_address,
        "to": tx.to_address,
        "value": hex(tx.value_wei),
        "data": "0x" + tx.data.hex(),
        "gas": hex(gas_limit),
    }
    try:
        await rpc.call("eth_call", [call, hex(max(block - 1, 0))])
    except RpcCallError as exc:
        failure = RpcFailure(message=exc.message, code=exc.rpc_code, data=exc.data)
        if classify(failure) is not RpcErrorKind.EXECUTION_REVERTED:
            return None  # e.g. the parent block's state is pruned: no reason, no node text
        return revert_reason(failure) or exc.message[:REASON_MAX]
    return (
        f"not found: the same call at block {block - 1} did not revert (a transaction before "
        f"it in block {block} changed the state, and this node cannot trace it)"
    )
