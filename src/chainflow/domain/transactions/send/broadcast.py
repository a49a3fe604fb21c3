"""Send signed attempts in JSON-RPC batches and sort each answer into what to do next."""

from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from chainflow.domain.transactions.node import ChainRpc
from chainflow.infra.rpc.client import RpcCallError, RpcTransportError
from chainflow.infra.rpc.errors import RpcErrorKind, RpcFailure, classify


class SendOutcome(StrEnum):
    ACCEPTED = "accepted"  # the node has it, or a tx at this nonce is already in or on chain
    RETRY = "retry"  # maybe sent, maybe not: keep the same bytes and send again later
    NO_FUNDS = "no_funds"  # the lane waits until the wallet is funded
    FATAL = "fatal"  # the node will never accept these bytes: they never entered a pool


# "nonce too low" means a transaction with this nonce is on chain: ours (crash after a send)
# or a foreign one; the tracker tells which from receipts (DESIGN §6.7), so it counts as sent.
_OUTCOMES = {
    RpcErrorKind.ALREADY_KNOWN: SendOutcome.ACCEPTED,
    RpcErrorKind.REPLACEMENT_UNDERPRICED: SendOutcome.ACCEPTED,
    RpcErrorKind.NONCE_TOO_LOW: SendOutcome.ACCEPTED,
    RpcErrorKind.INSUFFICIENT_FUNDS: SendOutcome.NO_FUNDS,
    RpcErrorKind.FATAL: SendOutcome.FATAL,
    RpcErrorKind.EXECUTION_REVERTED: SendOutcome.FATAL,
}


def outcome_of(answer: Any) -> tuple[SendOutcome, str | None]:
    """Classify one eth_sendRawTransaction answer; the second item is the error kind."""
    if isinstance(answer, RpcTransportError):
        return SendOutcome.RETRY, RpcErrorKind.TRANSPORT.value
    if isinstance(answer, RpcCallError):
        kind = classify(RpcFailure(code=answer.rpc_code, message=answer.message, data=answer.data))
        return _OUTCOMES.get(kind, SendOutcome.RETRY), kind.value
    return SendOutcome.ACCEPTED, None


async def send_raw(rpc: ChainRpc, raws: Sequence[bytes]) -> list[Any]:
    """eth_sendRawTransaction for each raw tx, in order, in batches of 200."""
    answers: list[Any] = []
    for start in range(0, len(raws), 200):
        chunk = raws[start : start + 200]
        try:
            answers += await rpc.batch(
                [("eth_sendRawTransaction", ["0x" + raw.hex()]) for raw in chunk]
            )
        except RpcTransportError as exc:
            answers += [exc] * len(chunk)
    return answers
