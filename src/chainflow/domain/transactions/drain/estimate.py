"""Gas estimates before any nonce is taken: a revert fails the request and burns nothing, or,
while an earlier request of its lane is not mined yet, waits for it."""

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
from chainflow.infra.rpc.answers import quantity
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
    # per lane, the request that ended its prefix to wait for what is ahead of it, or None
    waiting: list[TxId | None]


def _call_of(tx: Queued) -> dict[str, str]:
    return {
        "from": tx.from_address,
        "to": tx.to_address,
        "value": hex(tx.value_wei),
        "data": "0x" + tx.data.hex(),
    }


async def estimate_gas(
    rpc: ChainRpc,
    lanes: Sequence[Sequence[Queued]],
    *,
    buffer_percent: int,
    unmined_ahead: Sequence[bool],
) -> Estimates:
    """Per lane (queued requests of one lane, a snapshot in submission order), gas limits for
    the longest prefix that can go now; every lane's calls go in the same JSON-RPC batches.
    `unmined_ahead` says per lane whether a nonce of it is taken and not mined yet
    (`plan.has_unmined`). The signing step re-checks each request under its lock.

    Every request is estimated, also one with an explicit gas_limit (which must cover the
    estimate); the rule of each answer is `cut_prefix`'s.
    """
    calls = [("eth_estimateGas", [_call_of(tx)]) for lane in lanes for tx in lane]
    answers: list[Any] = []
    try:
        for start in range(0, len(calls), _CHUNK):
            answers += await rpc.batch(calls[start : start + _CHUNK])
    except RpcTransportError:
        return Estimates([[] for _ in lanes], {}, [None for _ in lanes])
    ready: list[list[Estimate]] = []
    refused: Refused = {}
    waiting: list[TxId | None] = []
    offset = 0
    for lane, unmined in zip(lanes, unmined_ahead, strict=True):
        answered = answers[offset : offset + len(lane)]
        prefix = cut_prefix(
            lane, answered, refused, buffer_percent=buffer_percent, unmined_ahead=unmined
        )
        ready.append(prefix)
        waiting.append(
            _waiting(lane, answered, prefix, unmined_ahead=unmined, buffer_percent=buffer_percent)
        )
        offset += len(lane)
    return Estimates(ready, refused, waiting)


def _waiting(
    rows: Sequence[Queued],
    answers: Sequence[Any],
    prefix: Sequence[Estimate],
    *,
    unmined_ahead: bool,
    buffer_percent: int,
) -> TxId | None:
    """The lane's first request when it waits on a nonce taken and not mined alone (nothing of
    this round ahead of it, and a verdict `cut_prefix` did not fail it with: with
    `unmined_ahead` it fails none), else None. A request that waits behind one of this round
    is not one: that one may leave the queue unsigned (cancelled, expired) with no count
    moving, and the request must then be judged again at once."""
    if prefix or not unmined_ahead or not rows:
        return None
    verdict = _verdict(rows[0], answers[0], buffer_percent=buffer_percent)
    return rows[0].id if isinstance(verdict, tuple) else None


def cut_prefix(
    rows: Sequence[Queued],
    answers: Sequence[Any],
    refused: Refused,
    *,
    buffer_percent: int,
    unmined_ahead: bool,
) -> list[Estimate]:
    """The lane's prefix that can be signed now, from the estimate answers of its `rows`;
    adds to `refused` the requests to fail.

    A revert, or an explicit gas_limit below the estimate, fails the request (no nonce taken)
    and the prefix goes on, but only when nothing of the lane is ahead of it unmined: no
    earlier request of this prefix (about to be signed) and no nonce taken and not mined
    (`unmined_ahead`). Otherwise the answer was read on a state its predecessors have not
    changed yet (an approve before a transferFrom, a deposit before a transfer of the wrapped
    ether; a first write of a storage slot costs more gas than a later one), so the prefix ends
    there and the request stays queued, estimated again next round: it waits at most until
    they are mined. Any other error (no funds, transport) also ends the prefix there, so later
    requests never overtake.
    """
    ready: list[Estimate] = []
    for tx, answer in zip(rows, answers, strict=True):
        verdict = _verdict(tx, answer, buffer_percent=buffer_percent)
        if isinstance(verdict, Estimate):
            ready.append(verdict)
        elif verdict is None or unmined_ahead or ready:
            break
        else:
            refused[tx.id] = verdict
    return ready


def _verdict(tx: Queued, answer: Any, *, buffer_percent: int) -> Estimate | tuple[str, str] | None:
    """The request's gas limit, the code and message to fail it with, or None (not judged)."""
    if isinstance(answer, str):
        needed = quantity(answer, bits=63)
        if tx.gas_limit is None:
            return Estimate(tx.id, with_gas_buffer(needed, buffer_percent=buffer_percent))
        if needed <= tx.gas_limit:
            return Estimate(tx.id, tx.gas_limit)
        # An explicit limit below what the call needs would be refused by geth, or accepted
        # and silently dropped by others (anvil): fail it before any nonce.
        return (
            "gas_limit_too_low",
            f"gas_limit {tx.gas_limit} is below the {needed} gas this call needs",
        )
    if (reason := _revert(answer)) is not None:
        return ("estimate_reverted", reason)
    return None  # no funds or a node error


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
