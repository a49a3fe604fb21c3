"""Broadcast stored attempts and record what each node answer means for the request."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from chainflow.core.clock import utcnow
from chainflow.core.crashpoints import CrashPoint
from chainflow.core.logging import get_logger
from chainflow.domain.transactions.broadcast import SendOutcome, outcome_of, send_raw
from chainflow.domain.transactions.lifecycle import apply
from chainflow.domain.transactions.models import AttemptStatus, Transaction, TxAttempt
from chainflow.domain.transactions.nonce_gaps import release_nonce
from chainflow.domain.transactions.runtime import ChainConfig, Engine
from chainflow.domain.transactions.state import TxEvent, TxStatus
from chainflow.infra.db.params import in_list
from chainflow.infra.db.uow import unit_of_work

log = get_logger(__name__)


@dataclass(frozen=True)
class SentAttempt:
    tx_id: uuid.UUID
    attempt_id: uuid.UUID
    raw: bytes
    nonce: int


async def record_sends(engine: Engine, chain: ChainConfig, sends: Sequence[SentAttempt]) -> None:
    """Send in the given (nonce) order, then record every answer in one DB transaction."""
    answers = await send_raw(engine.rpc[chain.chain_id], [s.raw for s in sends])
    engine.crasher.reached(CrashPoint.NODE_ACCEPTED)
    fatal: list[tuple[uuid.UUID, str]] = []
    async with unit_of_work(engine.sessionmaker) as session:
        attempts = await _load(session, [s.attempt_id for s in sends])
        for send, answer in zip(sends, answers, strict=True):
            outcome, kind = outcome_of(answer)
            attempt = attempts[send.attempt_id]
            if outcome is SendOutcome.FATAL:
                fatal.append((send.tx_id, kind or "fatal"))
                continue
            _record(session, attempt, outcome, kind)
    for tx_id, kind in fatal:
        await release_nonce(engine, chain, tx_id, error_code=f"rpc_{kind}")


async def _load(session: AsyncSession, ids: list[uuid.UUID]) -> dict[uuid.UUID, TxAttempt]:
    # Lock the requests first, in id order, as the tracker does: no deadlock between workers.
    tx_ids = select(TxAttempt.tx_id).where(TxAttempt.id.in_(in_list(ids))).scalar_subquery()
    locking = select(Transaction.id).where(Transaction.id.in_(tx_ids)).order_by(Transaction.id)
    await session.execute(locking.with_for_update())
    query = (
        select(TxAttempt).where(TxAttempt.id.in_(in_list(ids))).options(selectinload(TxAttempt.tx))
    )
    return {a.id: a for a in (await session.scalars(query)).all()}


def _record(
    session: AsyncSession, attempt: TxAttempt, outcome: SendOutcome, kind: str | None
) -> None:
    now = utcnow()
    attempt.last_sent_at = now
    if outcome is SendOutcome.ACCEPTED:
        attempt.broadcast_count += 1
        attempt.first_sent_at = attempt.first_sent_at or now
        attempt.last_error = None
        if attempt.status is AttemptStatus.SIGNED:
            attempt.status = AttemptStatus.SUBMITTED
        tx: Transaction = attempt.tx
        if tx.status is TxStatus.SIGNED:
            apply(session, tx, TxEvent.BROADCAST_ACCEPTED, hash=attempt.hash, answer=kind)
        return
    if kind == "transport":
        attempt.broadcast_count += 1  # maybe it reached the node: never re-sign this nonce
    attempt.last_error = "insufficient_funds" if outcome is SendOutcome.NO_FUNDS else kind
