"""Receipts and confirmations of many locked requests at once: the tracker's common path.

Every request the tracker sees mined goes through here, so it is written as a few bulk
statements rather than an ORM flush per row; the rare outcomes (reorgs, foreign nonces,
re-sends) stay in receipts.py.
"""

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.clock import utcnow
from chainflow.core.types import TxHash, TxId, Wei
from chainflow.domain.transactions.decisions import Action, Decision, Receipt
from chainflow.domain.transactions.errors import FEE_CAP_BELOW_BASE_FEE
from chainflow.domain.transactions.models import AttemptKind, DetailValue
from chainflow.domain.transactions.repository import LockedState, bulk
from chainflow.domain.transactions.rows import InFlight, Transition
from chainflow.domain.transactions.state import TxEvent, TxStatus
from chainflow.domain.transactions.telemetry import record_stages
from chainflow.domain.transactions.transitions import step
from chainflow.infra.rpc.answers import quantity

COMMON = (Action.NONE, Action.RECORD_RECEIPT, Action.FINALIZE)
_PRICED_OUT = (
    "its max_fee_per_gas could not pay the base fee for CHAINFLOW_FEE_CAP_WAIT_S after it was "
    "signed; a 0-value self-transfer took its nonce, so it was not executed"
)


async def record_common(
    session: AsyncSession,
    rows: Sequence[InFlight],
    decisions: dict[TxId, Decision],
    locked: dict[TxId, LockedState],
    *,
    head: int,
    reasons: dict[TxId, str] | None = None,
) -> None:
    """Write receipts, depth and finality of `rows` (locked by the caller, `locked` their
    current state), and stamp the head on attempts first seen sent; a request finalised as
    reverted carries its revert reason from `reasons` when the node gave one."""
    writes = bulk.ReceiptWrites(head=head)
    now = utcnow()
    moves: list[tuple[InFlight, Transition]] = []
    for tx in rows:
        decision = decisions[tx.id]
        if decision.action is Action.NONE:
            writes.stamped.append(tx.id)
        else:
            _mined(writes, moves, tx, decision, locked[tx.id], now, (reasons or {}).get(tx.id))
    first_sent = await bulk.store_receipts(session, writes)
    # Metrics (issue 18), in the order of the moves (mined before confirmed), with the first
    # send as written: a request read `signed` and locked `submitted` has none in `tx`.
    for tx, moved in moves:
        record_stages(tx, (moved.before, moved.after), at=moved.at, sent=first_sent.get(tx.id))


def _mined(
    writes: bulk.ReceiptWrites,
    moves: list[tuple[InFlight, Transition]],
    tx: InFlight,
    decision: Decision,
    current: LockedState,
    now: datetime,
    reason: str | None = None,
) -> None:
    mined, receipt = decision.attempt, decision.receipt
    assert mined is not None  # noqa: S101 - set for receipt actions
    assert receipt is not None  # noqa: S101
    block_hash = str(receipt["blockHash"])
    receipt_status = _int(receipt.get("status"))
    status = current.status
    moved = current.final_hash != mined.hash or current.block_hash != block_hash
    if status is not TxStatus.MINED or moved:
        status = _step(
            writes, moves, tx, status, TxEvent.RECEIPT_FOUND, now, mined.hash, block_hash
        )
    error: tuple[str, str] | tuple[None, None] = (None, None)
    if decision.action is Action.FINALIZE:
        if mined.kind is AttemptKind.CANCEL:
            event = TxEvent.CANCEL_WON
            if not tx.cancel_requested:  # no one asked: the tracker cancelled it, priced out
                error = (FEE_CAP_BELOW_BASE_FEE, _PRICED_OUT)
        elif decision.is_final_revert:
            event = TxEvent.CONFIRMED_REVERT
            message = "the transaction reverted on chain"
            error = ("reverted", f"{message}: {reason}" if reason else message)
        else:
            event = TxEvent.CONFIRMED_SUCCESS
        status = _step(writes, moves, tx, status, event, now, mined.hash)
    writes.requests.append(
        {  # a ReceiptUpdate
            "id": tx.id,
            "status": status,
            "final_hash": mined.hash,
            "block_hash": block_hash,
            "block_number": quantity(receipt["blockNumber"], bits=63),
            "gas_used": _int(receipt.get("gasUsed")),
            "effective_gas_price_wei": _wei(receipt),
            "receipt_status": receipt_status,
            "confirmations": max(decision.depth, 0),
            "error_code": error[0],
            "error_message": error[1],
            "updated_at": now,
        }
    )
    writes.attempts.append({"tx_id": tx.id, "mined": mined.id})


def _step(
    writes: bulk.ReceiptWrites,
    moves: list[tuple[InFlight, Transition]],
    tx: InFlight,
    status: TxStatus,
    event: TxEvent,
    now: datetime,
    hash_: TxHash,
    block_hash: str | None = None,
) -> TxStatus:
    """Move `tx` by `event` at the pass's time `now`: the time its row is written with, so
    its events and its stage times agree with the row."""
    detail: dict[str, DetailValue] = {"hash": hash_}
    if block_hash is not None:
        detail["block_hash"] = block_hash
    moved = step(tx.id, status, event, now, chain_id=tx.chain_id, **detail)
    moves.append((tx, moved))
    writes.transitions.append(moved)
    return moved.after


def _int(value: object) -> int | None:
    return quantity(value) if isinstance(value, str) else None


def _wei(receipt: Receipt) -> Wei | None:
    price = _int(receipt.get("effectiveGasPrice"))
    return None if price is None else Wei(price)
