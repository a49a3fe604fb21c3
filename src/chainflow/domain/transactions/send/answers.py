"""What each node answer to a broadcast means for its request and attempt, recorded in bulk."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.clock import utcnow
from chainflow.core.types import AttemptId, Nonce, TxHash, TxId
from chainflow.domain.transactions import repository
from chainflow.domain.transactions.repository import bulk
from chainflow.domain.transactions.rows import RefusedUpdate, sent_update
from chainflow.domain.transactions.send.broadcast import SendOutcome, outcome_of
from chainflow.domain.transactions.state import TxEvent, TxStatus
from chainflow.domain.transactions.telemetry import count_error
from chainflow.domain.transactions.transitions import step


@dataclass(frozen=True)
class SentAttempt:
    tx_id: TxId
    attempt_id: AttemptId
    raw: bytes
    nonce: Nonce
    hash: TxHash


@dataclass(frozen=True)
class Refused:
    """A request whose only attempt a node refused for good: its nonce must be released."""

    tx_id: TxId
    error_code: str


async def record_answers(
    session: AsyncSession, chain_id: int, sends: Sequence[SentAttempt], answers: Sequence[Any]
) -> list[Refused]:
    """Record the node's answer to each send (same order); return the requests it refused
    for good, whose nonces the caller releases (nonce_gaps.release_nonce)."""
    fatal: list[Refused] = []
    now = utcnow()
    writes = bulk.SendWrites()
    locked = await repository.lock_states(session, [s.tx_id for s in sends])
    statuses = {tx_id: state.status for tx_id, state in locked.items()}
    for send, answer in zip(sends, answers, strict=True):
        outcome, kind = outcome_of(answer)
        if kind is not None:
            count_error(chain_id, kind)  # metrics (issue 18)
        if outcome is SendOutcome.FATAL:
            fatal.append(Refused(send.tx_id, f"rpc_{kind or 'fatal'}"))
        elif outcome is SendOutcome.ACCEPTED:
            writes.accepted.append({"id": send.attempt_id, "at": now})
            if statuses.get(send.tx_id) is TxStatus.SIGNED:
                statuses[send.tx_id] = _submitted(writes, send, kind, chain_id)
        else:
            writes.refused.append(_refused(send, outcome, kind, now))
    await bulk.store_sends(session, writes)
    return fatal


def _submitted(
    writes: bulk.SendWrites, send: SentAttempt, kind: str | None, chain_id: int
) -> TxStatus:
    moved = step(
        send.tx_id,
        TxStatus.SIGNED,
        TxEvent.BROADCAST_ACCEPTED,
        chain_id=chain_id,
        hash=send.hash,
        answer=kind,
    )
    writes.transitions.append(moved)
    writes.moved.append(sent_update(moved))
    return moved.after


def _refused(
    send: SentAttempt, outcome: SendOutcome, kind: str | None, now: datetime
) -> RefusedUpdate:
    # A transport failure may have reached the node: counted as a broadcast, so this nonce is
    # never signed again with other bytes.
    return {
        "id": send.attempt_id,
        "at": now,
        "sent": 1 if kind == "transport" else 0,
        "error": "insufficient_funds" if outcome is SendOutcome.NO_FUNDS else kind,
    }
