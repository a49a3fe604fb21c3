"""The fee floor (issue 14): a queued request whose fee cap cannot pay the next block's base
fee is not signed; it waits, and expires with the reason if its valid_until passes first."""

import contextlib

from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.clock import utcnow
from chainflow.core.types import WalletId
from chainflow.domain.transactions import repository
from chainflow.domain.transactions.config import ChainConfig
from chainflow.domain.transactions.errors import FEE_CAP_BELOW_BASE_FEE
from chainflow.domain.transactions.fees import FeeFloor, fee_floor
from chainflow.domain.transactions.market import FeeCache
from chainflow.domain.transactions.node import ChainRpc
from chainflow.domain.transactions.state import TxEvent
from chainflow.domain.transactions.transitions import apply
from chainflow.infra.rpc.client import RpcCallError, RpcTransportError


def floor_of(chain: ChainConfig, base_fee_wei: int | None) -> FeeFloor | None:
    """The floor on `chain` under this base fee; None without one (a legacy chain)."""
    return fee_floor(base_fee_wei, chain_cap_wei=chain.max_fee_per_gas_cap)


def known_floor(fees: FeeCache, chain: ChainConfig) -> FeeFloor | None:
    """The floor at the process's last market read (no RPC); None before the first one."""
    last = fees.last(chain.chain_id)
    return floor_of(chain, last.base_fee_wei) if last is not None else None


async def refresh_market(fees: FeeCache, rpc: ChainRpc, chain: ChainConfig) -> None:
    """Read the market again if the cached read is older than its TTL (best effort: a node
    that fails leaves the last known floor, and the next round tries again)."""
    with contextlib.suppress(RpcCallError, RpcTransportError):
        await fees.market(rpc, chain)


async def expire_priced_out(
    session: AsyncSession, chain: ChainConfig, wallet_ids: list[WalletId], floor: FeeFloor | None
) -> None:
    """Expire, with the reason, the queued requests of these lanes that could not pay the base
    fee before their valid_until (the others expire as they come up for signing)."""
    if floor is None:
        return
    rows = await repository.lock_expired_below(
        session, chain.chain_id, wallet_ids, now=utcnow(), min_fee_cap_wei=floor.min_request_cap_wei
    )
    whose = "its" if floor.chain_pays else "the chain's"
    for tx in rows:
        tx.error_code = FEE_CAP_BELOW_BASE_FEE
        tx.error_message = (
            f"valid_until passed while {whose} max_fee_per_gas could not pay the base fee "
            f"of {floor.base_fee_wei} wei; it was never signed"
        )
        apply(session, tx, TxEvent.EXPIRED, code=tx.error_code, base_fee=floor.base_fee_wei)
