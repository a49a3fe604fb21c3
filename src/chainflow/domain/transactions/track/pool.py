"""Which possibly stranded attempts the node's pool lists as queued (decisions.is_stranded).

anvil's pool race (research/anvil-facts.md item 3) parks a send whose nonce is the wallet's
mined count in the pool's queued set for good; only a replacement frees it. The pool says so
at once: `txpool_contentFrom(address)` (geth, its forks) answers
`{"pending": {nonce: tx}, "queued": {nonce: tx}}` with decimal nonce strings as keys. anvil
1.7.1 does not know that method (-32601) but answers `txpool_content`, the same map one level
deeper by sender address, for every sender: it is read only when `txpool_status` counts a
pool small enough (`_CONTENT_MAX_TXS`), so a busy node's whole pool is never downloaded.

Only a request's latest attempt counts (decisions.is_stranded also waits until its last send
is `_PARKED_MIN_AGE_S` old): an earlier attempt a node still lists is one the latest replaced.

A node that answers a method, per item, "method not found" (-32601, or the text nodes and
providers put on it) is remembered not to know it (`PoolSupport`, per chain for the process)
and never asked again; with neither method the stranded rule waits `stranded_held_after_s`
as before. Any other failure, a whole batch refused included (providers answer -32600 for a
batch too large), leaves this pass's answer empty (the same fallback, for one pass).
"""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chainflow.domain.transactions.decisions import latest_attempt
from chainflow.domain.transactions.node import ChainRpc
from chainflow.domain.transactions.rows import InFlight
from chainflow.infra.rpc.answers import quantity
from chainflow.infra.rpc.client import RpcCallError, RpcTransportError

# The largest pool (pending + queued, every sender) whose whole content is read: ~1 KB of
# JSON a transaction, well under the RPC client's answer cap (DEFAULT_MAX_RESPONSE_BYTES).
_CONTENT_MAX_TXS = 2_000

# Wallets per txpool_contentFrom batch, as receipts per batch (observe._CHUNK).
_CHUNK = 500

# JSON-RPC "method not found", and the texts nodes and providers put on an unknown method.
# Not -32600 ("invalid request"): providers answer it for a batch too large.
_METHOD_NOT_FOUND = -32601
_UNSUPPORTED_TEXT = re.compile(
    r"method not found|not supported|does not exist|not available|unsupported", re.IGNORECASE
)


@dataclass
class PoolSupport:
    """What a chain's node answered of the pool methods, as far as this process knows."""

    content_from: bool = True  # txpool_contentFrom
    content: bool = True  # txpool_status + txpool_content

    @property
    def any(self) -> bool:
        return self.content_from or self.content


def is_unsupported(error: RpcCallError) -> bool:
    """The node does not serve the method (rather than failing this one call)."""
    return error.rpc_code == _METHOD_NOT_FOUND or bool(_UNSUPPORTED_TEXT.search(error.message))


async def parked(
    rpc: ChainRpc, suspects: Sequence[InFlight], support: PoolSupport
) -> frozenset[str]:
    """The hashes (lower case) of the suspects' latest attempts the pool lists as queued at
    their nonce. `suspects` are may_be_stranded: their nonce is their wallet's mined count. One
    txpool_contentFrom per wallet (at most one suspect each), or one txpool_content."""
    if not suspects or not support.any:
        return frozenset()
    queued: dict[str, Mapping[str, Any]] | None = None
    if support.content_from:
        queued = await _queued_by_address(rpc, suspects, support)
    if queued is None and support.content:
        queued = await _queued_from_content(rpc, support)
    if not queued:
        return frozenset()
    found: set[str] = set()
    for tx in suspects:
        listed = queued.get(tx.from_address.lower(), {}).get(str(tx.nonce))
        listed_hash = listed.get("hash") if isinstance(listed, dict) else None
        if not isinstance(listed_hash, str):
            continue
        if listed_hash.lower() == latest_attempt(tx).hash.lower():
            found.add(listed_hash.lower())
    return frozenset(found)


async def _queued_by_address(
    rpc: ChainRpc, suspects: Sequence[InFlight], support: PoolSupport
) -> dict[str, Mapping[str, Any]] | None:
    """Each wallet's queued transactions by nonce key; None once the node turns out not to
    know txpool_contentFrom (the caller tries txpool_content instead)."""
    addresses = sorted({tx.from_address for tx in suspects})
    queued: dict[str, Mapping[str, Any]] = {}
    for start in range(0, len(addresses), _CHUNK):
        chunk = addresses[start : start + _CHUNK]
        try:
            answers = await rpc.batch([("txpool_contentFrom", [a]) for a in chunk])
        except (RpcCallError, RpcTransportError):  # the whole batch refused: this pass only
            return {}
        for address, answer in zip(chunk, answers, strict=True):
            if isinstance(answer, RpcCallError):
                if is_unsupported(answer):
                    support.content_from = False
                    return None
                continue
            if isinstance(answer, dict) and isinstance(answer.get("queued"), dict):
                queued[address.lower()] = answer["queued"]
    return queued


async def _queued_from_content(rpc: ChainRpc, support: PoolSupport) -> dict[str, Mapping[str, Any]]:
    """Every sender's queued transactions (address keys in lower case), read only when the
    pool is small; empty when it is not, or when the node failed this pass."""
    try:
        status = await rpc.call("txpool_status")
        if not isinstance(status, dict):
            return {}
        size = sum(_count(status.get(k) or 0) for k in ("pending", "queued"))
        if size > _CONTENT_MAX_TXS:
            return {}
        content = await rpc.call("txpool_content")
    except RpcCallError as exc:
        if is_unsupported(exc):
            support.content = False
        return {}
    except (RpcTransportError, ValueError, TypeError):
        return {}
    queued = content.get("queued") if isinstance(content, dict) else None
    if not isinstance(queued, dict):
        return {}
    return {a.lower(): txs for a, txs in queued.items() if isinstance(txs, dict)}


def _count(value: object) -> int:
    """A txpool_status count: a hex quantity, or a plain JSON number as some nodes answer."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        return quantity(value, bits=63)
    raise TypeError(f"not a count: {value!r}")
