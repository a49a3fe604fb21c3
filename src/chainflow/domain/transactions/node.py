"""What the engine asks a chain's node outside of sends: the ChainRpc port, and wallets'
nonce counts (mined `latest` and with its pool `pending`, read together in one batch; mined
as of an earlier block)."""

from collections.abc import Sequence
from typing import Any, Protocol

from chainflow.infra.rpc.answers import quantity

_TAGS = ("latest", "pending")


class ChainRpc(Protocol):
    """JSON-RPC to one chain (one client or a failover pool)."""

    async def call(self, method: str, params: Sequence[Any] = ()) -> Any: ...

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]: ...


async def nonce_counts(
    rpc: ChainRpc, addresses: Sequence[str]
) -> tuple[dict[str, int], dict[str, int]]:
    """(mined, pending) counts by address; an address whose answer failed is absent from
    that dict. Raises what `rpc.batch` raises when the node cannot be reached."""
    if not addresses:
        return {}, {}
    calls = [("eth_getTransactionCount", [a, tag]) for a in addresses for tag in _TAGS]
    answers = await rpc.batch(calls)
    return _by_address(addresses, answers[0::2]), _by_address(addresses, answers[1::2])


async def mined_counts_at(rpc: ChainRpc, addresses: Sequence[str], block: int) -> dict[str, int]:
    """Mined counts by address as of `block`; an address whose answer failed is absent."""
    if not addresses:
        return {}
    answers = await rpc.batch([("eth_getTransactionCount", [a, hex(block)]) for a in addresses])
    return _by_address(addresses, answers)


def _by_address(addresses: Sequence[str], answers: Sequence[Any]) -> dict[str, int]:
    return {
        a: quantity(c, bits=63)
        for a, c in zip(addresses, answers, strict=True)
        if isinstance(c, str)
    }
