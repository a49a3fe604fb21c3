"""Gas estimates before any nonce is taken: a revert fails the request and burns nothing."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from chainflow.domain.transactions.lifecycle import apply
from chainflow.domain.transactions.models import Transaction
from chainflow.domain.transactions.runtime import ChainRpc, Engine
from chainflow.domain.transactions.state import TxEvent, TxStatus
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.rpc.client import RpcCallError, RpcTransportError
from chainflow.infra.rpc.errors import RpcErrorKind, RpcFailure, classify, revert_reason


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


def _buffered(estimate: int, percent: int) -> int:
    return -(-estimate * (100 + percent) // 100)


async def _load(engine: Engine, tx_ids: Sequence[uuid.UUID]) -> Sequence[Transaction]:
    async with unit_of_work(engine.sessionmaker) as session:
        query = (
            select(Transaction)
            .where(Transaction.id.in_(tx_ids), Transaction.status == TxStatus.QUEUED)
            .order_by(Transaction.created_at, Transaction.id)
        )
        return (await session.scalars(query)).all()


async def estimate_gas(
    engine: Engine, rpc: ChainRpc, tx_ids: Sequence[uuid.UUID]
) -> list[Estimate]:
    """Estimates for the longest prefix of `tx_ids` that can go now, in submission order.

    A revert fails that request (no nonce taken) and the prefix continues; any other error
    (no funds, transport) stops the prefix there, so later requests never overtake.
    """
    rows = await _load(engine, tx_ids)
    todo = [tx for tx in rows if tx.gas_limit is None]
    try:
        answers = await rpc.batch([("eth_estimateGas", [_call_of(tx)]) for tx in todo])
    except RpcTransportError:
        return []
    by_id = dict(zip((tx.id for tx in todo), answers, strict=True))
    ready: list[Estimate] = []
    reverted: dict[uuid.UUID, str] = {}
    for tx in rows:
        answer: Any = by_id.get(tx.id, tx.gas_limit)
        if isinstance(answer, int):
            ready.append(Estimate(tx.id, answer))
        elif isinstance(answer, str):
            ready.append(
                Estimate(tx.id, _buffered(int(answer, 16), engine.config.gas_buffer_percent))
            )
        elif (reason := _revert(answer)) is not None:
            reverted[tx.id] = reason
        else:
            break
    if reverted:
        await _fail_reverted(engine, reverted)
    return ready


def _revert(answer: Any) -> str | None:
    if not isinstance(answer, RpcCallError):
        return None
    failure = RpcFailure(code=answer.rpc_code, message=answer.message, data=answer.data)
    if classify(failure) is not RpcErrorKind.EXECUTION_REVERTED:
        return None
    return revert_reason(failure) or answer.message


async def _fail_reverted(engine: Engine, reverted: dict[uuid.UUID, str]) -> None:
    async with unit_of_work(engine.sessionmaker) as session:
        query = (
            select(Transaction)
            .where(Transaction.id.in_(list(reverted)), Transaction.status == TxStatus.QUEUED)
            .order_by(Transaction.created_at, Transaction.id)  # the lane drain's lock order
        )
        for tx in (await session.scalars(query.with_for_update())).all():
            tx.error_code = "estimate_reverted"
            tx.error_message = reverted[tx.id][:1000]
            apply(session, tx, TxEvent.FAILED, code="estimate_reverted")
