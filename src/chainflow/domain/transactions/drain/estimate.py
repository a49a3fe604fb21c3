"""Gas estimates before any nonce is taken: a revert fails the request and burns nothing."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.types import TxId
from chainflow.domain.transactions import repository
from chainflow.domain.transactions.fees import with_gas_buffer
from chainflow.domain.transactions.node import ChainRpc
from chainflow.domain.transactions.rows import Queued
from chainflow.domain.transactions.state import TxEvent
from chainflow.domain.transactions.transitions import apply
from chainflow.infra.rpc.client import RpcCallError, RpcTransportError
from chainflow.infra.rpc.errors import RpcErrorKind, RpcFailure, classify, revert_reason

_CHUNK = 200  # calls per JSON-RPC batch, as for sends


@dataclass(frozen=True)
class Estimate:
    tx_id: TxId
    gas_limit: int


# Requests an estimate refused for good, with the error code and message to fail them with.
Refused: TypeAlias = dict[TxId, tuple[str, str]]


@dataclass(frozen=True)
class Estimates:
    ready: list[list[Estimate]]  # per lane, the prefix that can be signed now
    refused: Refused


def _call_of(tx: Queued) -> dict[str, str]:
    return {
        "from": tx.from_address,
        "to": tx.to_address,
        "value": hex(tx.value_wei),
        "data": "0x" + tx.data.hex(),
    }


async def estimate_gas(
    rpc: ChainRpc, lanes: Sequence[Sequence[Queued]], *, buffer_percent: int
) -> Estimates:
    """Per lane (queued requests of one lane, a snapshot in submission order), gas limits for
    the longest prefix that can go now; every lane's calls go in the same JSON-RPC batches.
    The signing step re-checks each request under its lock.

    Every request is estimated, also one with an explicit gas_limit (which must cover the
    estimate). A revert or a too-low limit fails that request (no nonce taken) and the prefix
    continues; any other error (no funds, transport) stops the prefix there, so later requests
    never overtake.
    """
    calls = [("eth_estimateGas", [_call_of(tx)]) for lane in lanes for tx in lane]
    answers: list[Any] = []
    try:
        for start in range(0, len(calls), _CHUNK):
            answers += await rpc.batch(calls[start : start + _CHUNK])
    except RpcTransportError:
        return Estimates([[] for _ in lanes], {})
    ready: list[list[Estimate]] = []
    refused: Refused = {}
    offset = 0
    for lane in lanes:
        answered = answers[offset : offset + len(lane)]
        ready.append(_prefix(lane, answered, refused, buffer_percent=buffer_percent))
        offset += len(lane)
    return Estimates(ready, refused)


def _prefix(
    rows: Sequence[Queued], answers: Sequence[Any], refused: Refused, *, buffer_percent: int
) -> list[Estimate]:
    ready: list[Estimate] = []
    for tx, answer in zip(rows, answers, strict=True):
        if isinstance(answer, str):
            needed = int(answer, 16)
            if tx.gas_limit is None:
                gas = with_gas_buffer(needed, buffer_percent=buffer_percent)
                ready.append(Estimate(tx.id, gas))
            elif needed <= tx.gas_limit:
                ready.append(Estimate(tx.id, tx.gas_limit))
            else:
                # An explicit limit below what the call needs would be refused by geth, or
                # accepted and silently dropped by others (anvil): fail it before any nonce.
                refused[tx.id] = (
                    "gas_limit_too_low",
                    f"gas_limit {tx.gas_limit} is below the {needed} gas this call needs",
                )
        elif (reason := _revert(answer)) is not None:
            refused[tx.id] = ("estimate_reverted", reason)
        else:
            break  # no funds or a node error: later requests must not overtake this one
    return ready


def _revert(answer: Any) -> str | None:
    if not isinstance(answer, RpcCallError):
        return None
    failure = RpcFailure(code=answer.rpc_code, message=answer.message, data=answer.data)
    if classify(failure) is not RpcErrorKind.EXECUTION_REVERTED:
        return None
    return revert_reason(failure) or answer.message


async def fail_refused(session: AsyncSession, refused: Refused) -> None:
    """Fail the requests an estimate refused for good (those still queued): no nonce taken."""
    for tx in await repository.lock_queued(session, list(refused)):
        code, message = refused[tx.id]
        tx.error_code, tx.error_message = code, message[:1000]
        apply(session, tx, TxEvent.FAILED, code=code)
