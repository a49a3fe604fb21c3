"""What to do with each request in flight this round: its decision (decisions.py), then the
round-wide rules, with what the process's tracker remembers between rounds (no DB, no RPC)."""

import time
from collections.abc import Sequence, Set
from dataclasses import dataclass, field

from chainflow.core.clock import utcnow
from chainflow.core.logging import get_logger
from chainflow.core.types import AttemptId, TxId
from chainflow.domain.transactions.config import ChainConfig, EngineConfig
from chainflow.domain.transactions.decisions import (
    Action,
    Decision,
    Observed,
    decide,
    latest_attempt,
)
from chainflow.domain.transactions.rows import InFlight
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.transactions.telemetry import count_replacement, tx_context
from chainflow.domain.transactions.track.gaps import GapMemory

log = get_logger(__name__)
_QUIET = (Action.NONE, Action.RESEND)  # outcomes that free no room in a lane
# What a drain of this process sending the request will do or let the next pass do.
_RECEIPT = (Action.RECORD_RECEIPT, Action.FINALIZE)


@dataclass
class TrackerMemory:
    """What a process's tracker remembers between rounds (state its worker keeps)."""

    # When the tracker first saw a request's nonce consumed with no receipt of ours (monotonic s).
    foreign_since: dict[TxId, float] = field(default_factory=dict)
    # Requests found stuck at their fee cap, with the attempt it was said for: the warning is
    # logged once per attempt, not every round (issue 14 saw ~7 lines a second).
    capped: dict[TxId, AttemptId] = field(default_factory=dict)
    # Lanes below a nonce gap, seen or shown (track/gaps.py).
    gaps: GapMemory = field(default_factory=GapMemory)


def judge(
    rows: Sequence[InFlight],
    seen: Observed,
    *,
    chain: ChainConfig,
    config: EngineConfig,
    memory: TrackerMemory,
    sending: Set[TxId],
) -> dict[TxId, Decision]:
    """What to do with each request this round: its decision (decisions.decide), then the
    round-wide rules: bump a wallet's lowest stuck nonce only, hold a foreign-nonce verdict
    for its grace period, and leave an unsent request to the drain of this process sending it."""
    now = utcnow()
    decisions = {tx.id: decide(tx, seen, chain=chain, config=config, now=now) for tx in rows}
    _bump_lowest_only(rows, decisions)
    _log_capped(memory, rows, decisions, base_fee_wei=seen.base_fee_wei)
    _hold_foreign(memory, chain, config, decisions)
    _leave_to_drains(sending, rows, decisions)
    return decisions


def frees_room(decisions: dict[TxId, Decision]) -> bool:
    """Whether a decision frees room in a lane (mined or failed): drains may sign more."""
    return any(d.action not in _QUIET for d in decisions.values())


@dataclass(frozen=True)
class Replacement:
    tx_id: TxId
    cancel: bool


def replacements(rows: Sequence[InFlight], decisions: dict[TxId, Decision]) -> list[Replacement]:
    """The bumps and cancels to sign this round, in the rows' order."""
    found: list[Replacement] = []
    for tx in rows:
        action = decisions[tx.id].action
        if action in (Action.BUMP, Action.CANCEL):
            found.append(Replacement(tx.id, cancel=action is Action.CANCEL))
    return found


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
    sending: Set[TxId], rows: Sequence[InFlight], decisions: dict[TxId, Decision]
) -> None:
    # A request still `signed` that a drain of this process signed and is sending (`sending`)
    # is being sent by that drain right now (rounds track while they drain): sending it here
    # as well would only double the node's work. After a crash there is no such drain, and it
    # goes at once, also while its lane is drained again (as it is round after round while a
    # later request's estimate waits for it: drain/estimate.py).
    # Its receipt, if the node already has one, is left to a pass after that drain has
    # recorded the send: recorded here, it would wait on the drain's locks (or the drain on
    # these) and skip the request's `submitted` event; but only while none of its attempts
    # was ever sent: one a drain sent earlier (its answer lost, the node took it) is not this
    # drain's, and a lane drained round after round would leave its receipt unrecorded for
    # as long as the lane stays busy (review).
    for tx in rows:
        if tx.status is not TxStatus.SIGNED or tx.id not in sending:
            continue
        action = decisions[tx.id].action
        fresh = all(attempt.last_sent_at is None for attempt in tx.attempts)
        if action is Action.RESEND or (action in _RECEIPT and fresh):
            decisions[tx.id] = Decision(Action.NONE)


def _bump_lowest_only(rows: Sequence[InFlight], decisions: dict[TxId, Decision]) -> None:
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
    rows: Sequence[InFlight],
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
        count_replacement(tx.chain_id, "capped")  # metrics (issue 18)
        log.warning(
            "tx.bump_capped",
            **tx_context(tx),
            nonce=tx.nonce,
            max_fee_per_gas=attempt.max_fee_per_gas_wei or attempt.gas_price_wei,
            base_fee_per_gas=base_fee_wei,
        )
