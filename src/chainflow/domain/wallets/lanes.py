"""Lane state: a wallet's nonce cursor on one chain next to the chain's own view."""

import asyncio

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.errors import ChainflowError
from chainflow.domain.chains import service as chains
from chainflow.domain.wallets import repository
from chainflow.domain.wallets.errors import LaneNotFound
from chainflow.domain.wallets.models import NONCE_GAP, Wallet
from chainflow.domain.wallets.schemas import LaneRead, PausedReason
from chainflow.infra.rpc.answers import quantity
from chainflow.infra.rpc.client import RpcCallError, RpcClient
from chainflow.infra.signing.signer import (
    KeyUnreadable,
    SignatureFailed,
    SignerHealth,
    SignerUnavailable,
)

# The reasons a lane may show (LaneRead.paused_reason); anything else stored shows as null.
_PAUSED_REASONS: dict[str, PausedReason] = {
    SignerUnavailable.code: "signer_unavailable",
    SignatureFailed.code: "bad_signature",
    KeyUnreadable.code: "key_unreadable",
    NONCE_GAP: "nonce_gap",
}


async def read_lane(
    session: AsyncSession,
    wallet: Wallet,
    chain_id: int,
    *,
    in_flight: int,
    http: aiohttp.ClientSession,
    timeout_s: float,
) -> LaneRead:
    """Return the lane with the chain's pending nonce and balance (null if no RPC answers);
    `in_flight` is counted by the caller (wallets do not read transactions).

    Raises:
        LaneNotFound: the wallet was never enabled on this chain.
    """
    chain = await chains.get_chain(session, chain_id)
    lane = await repository.get_lane(session, wallet.id, chain_id)
    if lane is None:
        raise LaneNotFound(f"wallet {wallet.id} was never enabled on chain {chain_id}")
    chain_nonce: int | None = None
    balance: int | None = None
    rpc_error: str | None = None
    if not chain.rpc_urls:
        rpc_error = "chain has no rpc_urls"
    else:
        client = RpcClient(http, chain.rpc_urls[0], timeout_s=timeout_s)
        try:
            nonce_hex, balance_hex = await asyncio.gather(
                client.call("eth_getTransactionCount", [wallet.address, "pending"]),
                client.call("eth_getBalance", [wallet.address, "latest"]),
            )
            chain_nonce, balance = quantity(nonce_hex, bits=63), quantity(balance_hex)
        except RpcCallError as exc:
            # The node's own words are not shown to every read key: they can carry anything a
            # provider puts there (the operator finds them in the workers' logs).
            rpc_error = f"the node answered JSON-RPC error {exc.rpc_code}"
        except ChainflowError as exc:  # transport failures: messages of our own, no URL
            rpc_error = str(exc)
        except (ValueError, TypeError):
            rpc_error = "the node answered something that is not a hex quantity"
    return LaneRead(
        wallet_id=wallet.id,
        chain_id=chain_id,
        enabled=lane.enabled,
        next_nonce=lane.next_nonce,
        chain_nonce=chain_nonce,
        in_flight=in_flight,
        balance_wei=balance,
        rpc_error=rpc_error,
        paused_reason=_PAUSED_REASONS.get(lane.paused_reason or ""),
        low_balance_wei=lane.low_balance_wei,
    )


# signer_error of a lane whose stored key the engine could not decrypt.
_KEY_UNREADABLE_ERROR = "the engine cannot decrypt the wallet's stored key (paused_reason)"


def with_signer_health(lane: LaneRead, health: SignerHealth | None) -> LaneRead:
    """The lane with its wallet's signer health as this process sees it (custody.py); never
    healthy while the lane shows `key_unreadable` (a local key's backend answers healthy,
    but the engine cannot decrypt the key it holds: the lane signs nothing)."""
    if lane.paused_reason == "key_unreadable":
        return lane.model_copy(
            update={"signer_healthy": False, "signer_error": _KEY_UNREADABLE_ERROR}
        )
    if health is None:
        return lane
    error = None if health.ok else health.detail
    return lane.model_copy(update={"signer_healthy": health.ok, "signer_error": error})
