"""Broadcast stored attempts and record what each node answer means for the request."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from chainflow.core.clock import utcnow
from chainflow.core.crashpoints import CrashPoint
from chainflow.core.types import AttemptId, Nonce, TxHash, TxId
from chainflow.domain.transactions import bulk
from chainflow.domain.transactions.broadcast import SendOutcome, outcome_of, send_raw
from chainflow.domain.transactions.config import ChainConfig
from chainflow.domain.transactions.nonce_gaps import release_nonce
from chainflow.domain.transactions.rows import RefusedUpdate, sent_update
from chainflow.domain.transactions.runtime import Engine
from chainflow.domain.transactions.state import TxEvent, TxStatus
from chainflow.domain.transactions.transitions import step
from chainflow.infra.db.uow import unit_of_work


@dataclass(frozen=True)
class SentAttempt:
    tx_id: TxId
    attempt_id: AttemptId
    raw: bytes
    nonce: Nonce
    hash: TxHash


async def record_sends(engine: Engine, chain: ChainConfig, sends: Sequence[SentAttempt]) -> None:
    """Send in the given (nonce) order, then record every answer in one DB transaction."""
    answers = await send_raw(engine.rpc[chain.chain_id], [s.raw for s in sends])
    engine.crasher.reached(CrashPoint.NODE_ACCEPTED)
    fatal: list[tuple[uuid.UUID, str]] = []
    now = utcnow()
    writes = bulk.SendWrites()
    async with unit_of_work(engine.sessionmaker) as session:
        locked = await bulk.lock_states(session, [s.tx_id for s in sends])
        statuses = {tx_id: state.status for tx_id, state in locked.items()}
        for send, answer in zip(sends, answers, strict=True):
            outcome, kind = outcome_of(answer)
            if outcome is SendOutcome.FATAL:
                fatal.append((send.tx_id, kind or "fatal"))
            elif outcome is SendOutcome.ACCEPTED:
                writes.accepted.append({"id": send.attempt_id, "at": now})
                if statuses.get(send.tx_id) is TxStatus.SIGNED:
                    statuses[send.tx_id] = _submitted(writes, send, kind)
            else:
                writes.refused.append(_refused(send, outcome, kind, now))
        await bulk.store_sends(session, writes)
    for tx_id, kind in fatal:
        await release_nonce(engine, chain, tx_id, error_code=f"rpc_{kind}")


def _submitted(writes: bulk.SendWrites, send: SentAttempt, kind: str | None) -> TxStatus:
    moved = step(
        send.tx_id, TxStatus.SIGNED, TxEvent.BROADCAST_ACCEPTED, hash=send.hash, answer=kind
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
