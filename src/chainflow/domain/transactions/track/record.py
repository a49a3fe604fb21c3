"""Record a tracking round's outcomes in the caller's DB transaction: receipts and finality
in bulk (mined.py), reorgs and foreign nonces row by row (outcomes.py)."""

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.crashpoints import Crasher, CrashPoint
from chainflow.core.types import TxId
from chainflow.domain.transactions import repository
from chainflow.domain.transactions.decisions import (
    Action,
    Decision,
    Observed,
)
from chainflow.domain.transactions.rows import InFlight
from chainflow.domain.transactions.send.answers import SentAttempt
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.transactions.track.mined import COMMON, record_common
from chainflow.domain.transactions.track.outcomes import apply_decision


def changes(tx: InFlight, decision: Decision) -> bool:
    """Whether applying `decision` writes anything (a receipt, an outcome, or the first-seen
    block of an attempt just sent)."""
    if decision.action is not Action.NONE:
        return True
    return any(a.first_sent_at is not None and a.sent_at_block is None for a in tx.attempts)


async def record(
    session: AsyncSession,
    moving: Sequence[InFlight],
    decisions: dict[TxId, Decision],
    seen: Observed,
    *,
    crasher: Crasher,
    reasons: dict[TxId, str] | None = None,
) -> list[SentAttempt]:
    """Apply receipt, finality, reorg and foreign-nonce outcomes of the requests that
    `changes`: receipts in bulk (confirming.py), the rare outcomes row by row (receipts.py).
    `reasons` are the node's revert reasons of requests finalised as reverted (reverts.py).
    Returns the attempts to send again."""
    resend: list[SentAttempt] = []
    current = await repository.lock_states(session, [tx.id for tx in moving])
    # A request whose status changed since we looked was moved by another worker, except a
    # receipt of one read `signed` whose send was recorded since (the drain's record of its
    # sends commits while the tracker reads the chain): the receipt still holds, and
    # recording it from `submitted` is what the next round would do, a round later.
    still = [
        tx
        for tx in moving
        if tx.id in current and _unchanged(tx.status, current[tx.id].status, decisions[tx.id])
    ]
    common = [tx for tx in still if decisions[tx.id].action in COMMON]
    await record_common(session, common, decisions, current, head=seen.head, reasons=reasons)
    rare = [tx for tx in still if decisions[tx.id].action not in COMMON]
    locked = await repository.lock_with_attempts(session, [tx.id for tx in rare]) if rare else {}
    for snapshot in rare:
        tx = locked[snapshot.id]
        decision = decisions[snapshot.id]
        again = await apply_decision(session, tx, decision, seen=seen)
        if decision.action is Action.REORGED:
            crasher.reached(CrashPoint.REORG_RECORDING)
        if again is not None:
            resend.append(again)
    return resend


def _unchanged(read: TxStatus, now: TxStatus, decision: Decision) -> bool:
    """Whether `decision`, made on a request read in status `read`, still applies to it in
    status `now` (locked)."""
    if now is read:
        return True
    receipt = decision.action in (Action.RECORD_RECEIPT, Action.FINALIZE)
    return receipt and read is TxStatus.SIGNED and now is TxStatus.SUBMITTED
