"""The steps of a tracking round, each in the caller's DB transaction where it needs one
(workers/track.py runs them): observe the chain, judge every request in flight, record."""

import time
import uuid
from collections.abc import Sequence, Set
from dataclasses import dataclass, field
from typing import cast

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from chainflow.core.clock import utcnow
from chainflow.core.crashpoints import Crasher, CrashPoint
from chainflow.core.logging import get_logger
from chainflow.core.types import AttemptId, TxId
from chainflow.domain.transactions import bulk
from chainflow.domain.transactions.config import ChainConfig, EngineConfig
from chainflow.domain.transactions.confirming import COMMON, record_common
from chainflow.domain.transactions.decisions import (
    Action,
    Decision,
    Observed,
    Receipt,
    decide,
    latest_attempt,
    may_be_mined,
    may_be_stranded,
)
from chainflow.domain.transactions.gas import FeeCache
from chainflow.domain.transactions.models import Transaction
from chainflow.domain.transactions.node import ChainRpc, nonce_counts
from chainflow.domain.transactions.receipts import apply_decision
from chainflow.domain.transactions.sending import SentAttempt
from chainflow.domain.transactions.state import TxStatus
from chainflow.infra.db.params import in_list
from chainflow.infra.rpc.client import RpcCallError, RpcTransportError

log = get_logger(__name__)
_CHUNK = 500
_QUIET = (Action.NONE, Action.RESEND)  # outcomes that free no room in a lane


@dataclass
class TrackerMemory:
    """What a process's tracker remembers between rounds (state its worker keeps)."""

    # When the tracker first saw a request's nonce consumed with no receipt of ours (monotonic s).
    foreign_since: dict[TxId, float] = field(default_factory=dict)
    # Requests found stuck at their fee cap, with the attempt it was said for: the warning is
    # logged once per attempt, not every round (issue 14 saw ~7 lines a second).
    capped: dict[TxId, AttemptId] = field(default_factory=dict)


def judge(
    rows: Sequence[Transaction],
    seen: Observed,
    *,
    chain: ChainConfig,
    config: EngineConfig,
    memory: TrackerMemory,
    draining: Set[tuple[uuid.UUID, int]],
) -> dict[TxId, Decision]:
    """What to do with each request this round: its decision (decisions.decide), then the
    round-wide rules: bump a wallet's lowest stuck nonce only, hold a foreign-nonce verdict
    for its grace period, and leave an unsent request to the drain of this process sending it."""
    now = utcnow()
    decisions = {tx.id: decide(tx, seen, chain=chain, config=config, now=now) for tx in rows}
    _bump_lowest_only(rows, decisions)
    _log_capped(memory, rows, decisions, base_fee_wei=seen.base_fee_wei)
    _hold_foreign(memory, chain, config, decisions)
    _leave_to_drains(draining, chain, rows, decisions)
    return decisions


def frees_room(decisions: dict[TxId, Decision]) -> bool:
    """Whether a decision frees room in a lane (mined or failed): drains may sign more."""
    return any(d.action not in _QUIET for d in decisions.values())


@dataclass(frozen=True)
class Replacement:
    tx_id: TxId
    cancel: bool


def replacements(rows: Sequence[Transaction], decisions: dict[TxId, Decision]) -> list[Replacement]:
    """The bumps and cancels to sign this round, in the rows' order."""
    found: list[Replacement] = []
    for tx in rows:
        action = decisions[tx.id].action
        if action in (Action.BUMP, Action.CANCEL):
            found.append(Replacement(tx.id, cancel=action is Action.CANCEL))
    return found


async def observe(
    rpc: ChainRpc,
    rows: Sequence[Transaction],
    *,
    resend_after_s: float = 0.0,
    base_fee_wei: int | None = None,
) -> Observed:
    """Mined nonce counts first, then receipts: a count above a nonce with no receipt of ours
    then really means another transaction took that nonce."""
    head = int(await rpc.call("eth_blockNumber"), 16)
    addresses = sorted({tx.from_address for tx in rows})
    latest, pending = await nonce_counts(rpc, addresses)
    now = utcnow()
    hashes = [
        attempt.hash
        for tx in rows
        if may_be_mined(tx, latest, now=now, resend_after_s=resend_after_s)
        for attempt in tx.attempts
    ]
    receipts: dict[str, Receipt] = {}
    for start in range(0, len(hashes), _CHUNK):
        chunk = hashes[start : start + _CHUNK]
        answers = await rpc.batch([("eth_getTransactionReceipt", [h]) for h in chunk])
        found = zip(chunk, answers, strict=True)
        receipts |= {h: cast(Receipt, r) for h, r in found if isinstance(r, dict)}
    held = await _held(rpc, [tx for tx in rows if may_be_stranded(tx, latest, pending)])
    return Observed(
        head=head,
        latest_nonce=latest,
        receipts=receipts,
        pending_nonce=pending,
        held=held,
        base_fee_wei=base_fee_wei,
    )


async def base_fee(fees: FeeCache, rpc: ChainRpc, chain: ChainConfig) -> int | None:
    """The next block's base fee, None if unknown: only priced-out cancels wait for it."""
    try:
        return (await fees.market(rpc, chain)).base_fee_wei
    except (RpcCallError, RpcTransportError):
        return None


async def _held(rpc: ChainRpc, suspects: Sequence[Transaction]) -> frozenset[str]:
    """Which of these requests' latest attempts the node still returns by hash (at most one
    request per wallet: the one holding its next nonce; usually none)."""
    if not suspects:
        return frozenset()
    hashes = [latest_attempt(tx).hash for tx in suspects]
    answers = await rpc.batch([("eth_getTransactionByHash", [h]) for h in hashes])
    return frozenset(h for h, found in zip(hashes, answers, strict=True) if isinstance(found, dict))


def _hold_foreign(
    memory: TrackerMemory,
    chain: ChainConfig,
    config: EngineConfig,
    decisions: dict[TxId, Decision],
) -> None:
    # A node can report a nonce as used before it serves the receipt of the very transaction
    # that used it (seen on anvil under load; a lagging replica behind a load balancer does
    # it for as long as it lags: tests/chaos/test_rpc_faults.py). Failing such a request as
    # "nonce taken" would report an executed payment as not executed, so the verdict waits
    # until that view has held for the grace period, never on one read.
    grace_s = max(3 * chain.block_time_s, config.foreign_nonce_grace_s)
    now = time.monotonic()
    since = memory.foreign_since
    for gone in set(since) - set(decisions):
        del since[gone]
    for tx_id, decision in decisions.items():
        if decision.action is not Action.FOREIGN:
            since.pop(tx_id, None)
            continue
        first = since.setdefault(tx_id, now)
        if now - first < grace_s:
            decisions[tx_id] = Decision(Action.NONE)


def _leave_to_drains(
    draining: Set[tuple[uuid.UUID, int]],
    chain: ChainConfig,
    rows: Sequence[Transaction],
    decisions: dict[TxId, Decision],
) -> None:
    # A request still `signed` in a lane a drain of this process is working on is being sent
    # by that drain right now (rounds track while they drain): sending it here as well would
    # only double the node's work. After a crash there is no such drain, and it goes at once.
    for tx in rows:
        if (
            tx.status is TxStatus.SIGNED
            and decisions[tx.id].action is Action.RESEND
            and (tx.wallet_id, chain.chain_id) in draining
        ):
            decisions[tx.id] = Decision(Action.NONE)


def _bump_lowest_only(rows: Sequence[Transaction], decisions: dict[TxId, Decision]) -> None:
    # Only the lowest stuck nonce of a wallet can be what blocks the others (Chainlink's
    # BumpTxDepth); bumping the rest would only burn fee headroom. A lowest one stuck at its
    # cap still blocks them.
    bumped: set[str] = set()
    for tx in sorted(rows, key=lambda t: (t.from_address, t.nonce or 0)):
        decision = decisions[tx.id]
        if decision.action is not Action.BUMP and not decision.capped:
            continue
        if decision.action is Action.BUMP and tx.from_address in bumped:
            decisions[tx.id] = Decision(Action.RESEND, decision.attempt)
        bumped.add(tx.from_address)


def _log_capped(
    memory: TrackerMemory,
    rows: Sequence[Transaction],
    decisions: dict[TxId, Decision],
    *,
    base_fee_wei: int | None,
) -> None:
    # Once per request and attempt: a request stuck at its cap is seen every round, and
    # logging each time flooded the log (~7 lines a second in issue 14).
    capped = memory.capped
    for gone in set(capped) - set(decisions):
        del capped[gone]
    for tx in rows:
        decision = decisions[tx.id]
        attempt = latest_attempt(tx)
        if not decision.capped or capped.get(tx.id) == attempt.id:
            continue
        capped[tx.id] = attempt.id
        log.warning(
            "tx.bump_capped",
            tx_id=str(tx.id),
            nonce=tx.nonce,
            max_fee_per_gas=attempt.max_fee_per_gas_wei or attempt.gas_price_wei,
            base_fee_per_gas=base_fee_wei,
        )


def changes(tx: Transaction, decision: Decision) -> bool:
    """Whether applying `decision` writes anything (a receipt, an outcome, or the first-seen
    block of an attempt just sent)."""
    if decision.action is not Action.NONE:
        return True
    return any(a.first_sent_at is not None and a.sent_at_block is None for a in tx.attempts)


async def record(
    session: AsyncSession,
    moving: Sequence[Transaction],
    decisions: dict[TxId, Decision],
    seen: Observed,
    *,
    crasher: Crasher,
) -> list[SentAttempt]:
    """Apply receipt, finality, reorg and foreign-nonce outcomes of the requests that
    `changes`: receipts in bulk (confirming.py), the rare outcomes row by row (receipts.py).
    Returns the attempts to send again."""
    resend: list[SentAttempt] = []
    current = await bulk.lock_states(session, [tx.id for tx in moving])
    # A request whose status changed since we looked was moved by another worker.
    still = [tx for tx in moving if tx.id in current and current[tx.id].status is tx.status]
    common = [tx for tx in still if decisions[tx.id].action in COMMON]
    await record_common(session, common, decisions, current, head=seen.head)
    rare = [tx for tx in still if decisions[tx.id].action not in COMMON]
    locked = await _lock(session, [tx.id for tx in rare]) if rare else {}
    for snapshot in rare:
        tx = locked[snapshot.id]
        decision = decisions[snapshot.id]
        again = await apply_decision(session, tx, decision, seen=seen)
        if decision.action is Action.REORGED:
            crasher.reached(CrashPoint.REORG_RECORDING)
        if again is not None:
            resend.append(again)
    return resend


async def _lock(session: AsyncSession, ids: list[uuid.UUID]) -> dict[uuid.UUID, Transaction]:
    query = (
        select(Transaction)
        .where(Transaction.id.in_(in_list(ids)))
        .options(selectinload(Transaction.attempts))
        .order_by(Transaction.id)  # one lock order everywhere: no deadlocks between workers
        .with_for_update()
    )
    return {tx.id: tx for tx in (await session.scalars(query)).all()}
