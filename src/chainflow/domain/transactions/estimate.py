"""Gas estimates before any nonce is taken: a revert fails the request and burns nothing."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from chainflow.domain.transactions.fees import with_gas_buffer
from chainflow.domain.transactions.models import Transaction
from chainflow.domain.transactions.runtime import ChainRpc, Engine
from chainflow.domain.transactions.state import TxEvent, TxStatus
from chainflow.domain.transactions.transitions import apply
from chainflow.infra.db.params import in_list
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.rpc.client import RpcCallError, RpcTransportError
from chainflow.infra.rpc.errors import RpcErrorKind, RpcFailure, classify, revert_reason

_CHUNK = 200  # calls per JSON-RPC batch, as for sends


@dataclass(frozen=True)
class Estimate:
    tx_id: uuid.UUID
    gas_limit: int


def _call_of(tx: Transaction) -> dict[str, str]:
    return {
        "from": tx.from_address,
        "to": tx.to_address,
        "value": hex(tx.value_wei),
        "data": "0x" + tx.data.hex(),
    }


async def estimate_gas(
    engine: Engine, rpc: ChainRpc, lanes: Sequence[Sequence[Transaction]]
) -> list[list[Estimate]]:
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
        return [[] for _ in lanes]
    ready: list[list[Estimate]] = []
    refused: dict[uuid.UUID, tuple[str, str]] = {}
    offset = 0
    for lane in lanes:
        ready.append(_prefix(engine, lane, answers[offset : offset + len(lane)], refused))
        offset += len(lane)
    if refused:
        await _fail_refused(engine, refused)
    return ready


def _prefix(
    engine: Engine,
    rows: Sequence[Transaction],
    answers: Sequence[Any],
    refused: dict[uuid.UUID, tuple[str, str]],
) -> list[Estimate]:
    ready: list[Estimate] = []
    for tx, answer in zip(rows, answers, strict=True):
        if isinstance(answer, str):
            needed = int(answer, 16)
            if tx.gas_limit is None:
                buffer = engine.config.gas_buffer_percent
                ready.append(Estimate(tx.id, with_gas_buffer(needed, buffer_percent=buffer)))
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


async def _fail_refused(engine: Engine, refused: dict[uuid.UUID, tuple[str, str]]) -> None:
    async with unit_of_work(engine.sessionmaker) as session:
        query = (
            select(Transaction)
            .where(Transaction.id.in_(in_list(refused)), Transaction.status == TxStatus.QUEUED)
            .order_by(Transaction.created_at, Transaction.id)  # the lane drain's lock order
        )
        for tx in (await session.scalars(query.with_for_update())).all():
            code, message = refused[tx.id]
            tx.error_code, tx.error_message = code, message[:1000]
            apply(session, tx, TxEvent.FAILED, code=code)
