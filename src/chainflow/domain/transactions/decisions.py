"""What the tracker does with one in-flight request, given what the chain shows. Pure."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import NotRequired, Protocol, TypedDict

from chainflow.core.types import AttemptId, Nonce, TxHash
from chainflow.domain.transactions.config import ChainConfig, EngineConfig
from chainflow.domain.transactions.fees import (
    MIN_BUMP_PERCENT,
    FeeCaps,
    can_replace,
    fee_cap_of,
    fees_of,
)
from chainflow.domain.transactions.state import AttemptKind, TxStatus
from chainflow.infra.rpc.answers import quantity


class TrackedAttempt(Protocol):
    """A signed attempt (models.TxAttempt) as decisions, and what acts on them, read it."""

    @property
    def id(self) -> AttemptId: ...
    @property
    def raw(self) -> bytes: ...
    @property
    def nonce(self) -> Nonce: ...
    @property
    def gas_limit(self) -> int: ...
    @property
    def kind(self) -> AttemptKind: ...
    @property
    def hash(self) -> TxHash: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def first_sent_at(self) -> datetime | None: ...
    @property
    def last_sent_at(self) -> datetime | None: ...
    @property
    def sent_at_block(self) -> int | None: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def gas_price_wei(self) -> int | None: ...
    @property
    def max_fee_per_gas_wei(self) -> int | None: ...
    @property
    def max_priority_fee_per_gas_wei(self) -> int | None: ...


class TrackedTx(Protocol):
    """What a decision reads of a request in flight (models.Transaction, attempts loaded)."""

    @property
    def status(self) -> TxStatus: ...
    @property
    def nonce(self) -> Nonce | None: ...
    @property
    def from_address(self) -> str: ...
    @property
    def cancel_requested(self) -> bool: ...
    @property
    def max_fee_per_gas_cap(self) -> int | None: ...
    @property
    def max_priority_fee_per_gas_cap(self) -> int | None: ...
    @property
    def attempts(self) -> Sequence[TrackedAttempt]: ...


class Action(StrEnum):
    NONE = "none"
    RECORD_RECEIPT = "record_receipt"  # mined, not yet at depth
    FINALIZE = "finalize"  # receipt at the chain's confirmation depth
    REORGED = "reorged"  # a receipt we had is gone
    FOREIGN = "foreign"  # the nonce was consumed by a transaction that is not ours
    RESEND = "resend"  # same bytes again (crash recovery, dropped transaction)
    BUMP = "bump"  # replace with higher fees
    CANCEL = "cancel"  # replace with a 0-value self-transfer


class Receipt(TypedDict):
    """The fields of an eth_getTransactionReceipt answer the tracker reads (hex quantities;
    no `status` before Byzantium)."""

    blockHash: str
    blockNumber: str
    status: NotRequired[str]
    gasUsed: NotRequired[str]
    effectiveGasPrice: NotRequired[str]


@dataclass(frozen=True)
class Observed:
    head: int
    latest_nonce: dict[str, int]  # address → mined transaction count
    receipts: dict[str, Receipt]  # attempt hash → receipt
    pending_nonce: dict[str, int] = field(default_factory=dict)  # address → count incl. pool
    # Hashes of possibly stranded attempts (may_be_stranded) that the node still returns.
    held: frozenset[str] = frozenset()
    # The next block's base fee; None on a chain without EIP-1559.
    base_fee_wei: int | None = None
    # address → mined count at block head - stuck_after_blocks, read for the wallets with an
    # attempt sent at least that long ago (may_be_stuck_by_blocks); is_stuck reads it.
    nonce_blocks_ago: dict[str, int] = field(default_factory=dict)
    # Hashes (lower case) of possibly stranded attempts that the node's pool lists as queued
    # at their nonce while the wallet's mined count is that nonce (track/pool.py): stranded now.
    parked: frozenset[str] = frozenset()
    # Addresses whose pending count is below their lane's lowest nonce in flight, with no
    # request of ours holding the nonces between, for GAP_HOLD_S at least (track/gaps.py,
    # set by workers/track.py): none of them can be mined.
    gapped: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Decision:
    action: Action
    attempt: TrackedAttempt | None = None
    receipt: Receipt | None = None
    depth: int = 0
    # Stuck, and no valid replacement fits under its fee caps: its highest attempt is re-sent.
    capped: bool = False

    @property
    def is_final_revert(self) -> bool:
        """Finalises its request as reverted: a final receipt with status 0 of an attempt that
        is not a cancel (a cancel mined decides `cancelled`, whatever its status)."""
        if self.action is not Action.FINALIZE or self.receipt is None or self.attempt is None:
            return False
        status = self.receipt.get("status")
        is_reverted = isinstance(status, str) and quantity(status) == 0
        return is_reverted and self.attempt.kind is not AttemptKind.CANCEL


@dataclass(frozen=True)
class Terms:
    """What a replacement of a request must meet: its caps, and its least raise per field."""

    caps: FeeCaps
    min_percent: Decimal


def replacement_terms(
    tx: TrackedTx, chain: ChainConfig, config: EngineConfig, *, cancel: bool
) -> Terms:
    """A bump stays under the chain's and the request's caps. A cancel (0-value self-transfer)
    is bound by the chain's caps only, never by the request's: a cap that cannot pay the base
    fee must not make the request impossible to cancel; and it raises each fee by the full
    bump percent, so that it replaces the original for sure."""
    chain_caps = FeeCaps(chain.max_fee_per_gas_cap, chain.max_priority_fee_per_gas_cap)
    if cancel:
        return Terms(chain_caps, max(Decimal(config.bump_percent), MIN_BUMP_PERCENT))
    request_caps = FeeCaps(tx.max_fee_per_gas_cap, tx.max_priority_fee_per_gas_cap)
    return Terms(chain_caps.merged(request_caps), MIN_BUMP_PERCENT)


def latest_attempt(tx: TrackedTx) -> TrackedAttempt:
    return max(tx.attempts, key=lambda attempt: attempt.created_at)


def decide(
    tx: TrackedTx, seen: Observed, *, chain: ChainConfig, config: EngineConfig, now: datetime
) -> Decision:
    """Choose the next step for a signed, submitted or mined request."""
    for attempt in tx.attempts:
        receipt = seen.receipts.get(attempt.hash)
        if receipt is not None:
            # At least 1: the node served the receipt, so it has the block, even when it was
            # mined after the head was read (anvil mines each send at once, and a busy chain
            # mines blocks while a round reads its receipts). Taken from the head, a send mined
            # during the round was at depth 0: recorded `mined`, its receipt asked for again
            # and `confirmed` only at the next round (docs/performance.md item 30).
            depth = max(seen.head - quantity(receipt["blockNumber"], bits=63), 0) + 1
            action = Action.FINALIZE if depth >= chain.confirmations else Action.RECORD_RECEIPT
            return Decision(action, attempt, receipt, depth)
    if tx.status is TxStatus.MINED:
        return Decision(Action.REORGED)
    mined_count = seen.latest_nonce.get(tx.from_address)
    if tx.nonce is not None and mined_count is not None and mined_count > tx.nonce:
        return Decision(Action.FOREIGN)
    return _unmined(tx, seen, chain=chain, config=config, now=now)


def _unmined(
    tx: TrackedTx, seen: Observed, *, chain: ChainConfig, config: EngineConfig, now: datetime
) -> Decision:
    latest = latest_attempt(tx)
    last = latest.last_sent_at
    due = last is None or (now - last).total_seconds() >= config.resend_after_s
    wait = Decision(Action.RESEND, latest) if due else Decision(Action.NONE)
    if tx.from_address in seen.gapped:
        # Below a nonce gap no block can hold it: a bump or cancel would only raise its fees
        # (up to the cap, for good). Its own bytes wait in the pool until the gap is filled.
        return wait
    if tx.cancel_requested and _can_cancel(tx, latest, chain, config):
        return Decision(Action.CANCEL, latest)  # signed or sent, whatever its own fee cap
    if tx.status is TxStatus.SIGNED and latest.last_error != _UNDERPRICED:
        # Never sent (crash before the send): at once; refused for now (no funds, node down):
        # again after resend_after_s, not every round.
        return wait
    if not (
        is_stuck(tx, latest, seen, config=config, now=now)
        or is_stranded(tx, latest, seen, config=config, now=now)
    ):
        return wait
    if _fits(tx, latest, chain, config, cancel=latest.kind is AttemptKind.CANCEL):
        return Decision(Action.BUMP, latest)
    if is_priced_out(tx, latest, seen, chain=chain, config=config, now=now):
        return Decision(Action.CANCEL, latest)
    return Decision(wait.action, wait.attempt, capped=True)


# What a node answers for a transaction whose fees are below its minimum or the base fee
# (rpc/errors.py): a signed request refused so is bumped like a sent one that is stuck.
_UNDERPRICED = "underpriced"


def _cancelling(tx: TrackedTx) -> bool:
    return any(a.kind is AttemptKind.CANCEL for a in tx.attempts)


def _can_cancel(
    tx: TrackedTx, latest: TrackedAttempt, chain: ChainConfig, config: EngineConfig
) -> bool:
    """No cancel was signed yet (once it was, it is bumped like any attempt), and one fits."""
    return not _cancelling(tx) and _fits(tx, latest, chain, config, cancel=True)


def _fits(
    tx: TrackedTx, latest: TrackedAttempt, chain: ChainConfig, config: EngineConfig, *, cancel: bool
) -> bool:
    """A valid replacement of the latest attempt (a cancel if `cancel`) fits under its caps."""
    terms = replacement_terms(tx, chain, config, cancel=cancel)
    return can_replace(fees_of(latest), terms.caps, min_percent=terms.min_percent)


def is_priced_out(
    tx: TrackedTx,
    latest: TrackedAttempt,
    seen: Observed,
    *,
    chain: ChainConfig,
    config: EngineConfig,
    now: datetime,
) -> bool:
    """The request's highest attempt cannot pay the base fee, no bump under its caps can
    (checked by the caller), a cancel can, and `fee_cap_wait_s` passed since that attempt
    was signed: its nonce goes to a cancel, so that the wallet's later requests are not held
    behind it for as long as the base fee stays high (issue 14)."""
    if not _is_below_base_fee(latest, seen):
        return False
    if not _can_cancel(tx, latest, chain, config):
        return False  # cancelling already, or the chain's own cap leaves no room: wait
    return (now - latest.created_at).total_seconds() >= config.fee_cap_wait_s


def is_stuck(
    tx: TrackedTx, attempt: TrackedAttempt, seen: Observed, *, config: EngineConfig, now: datetime
) -> bool:
    """Not mined N blocks after it was sent and next in line, or T seconds after it was first
    sent.

    An attempt no node ever accepted (e.g. a bump refused as underpriced) counts from its
    signing, so it is bumped again instead of only re-sent.
    """
    if _is_late_by_blocks(tx, attempt, seen, config):
        return True
    started = attempt.first_sent_at or attempt.created_at
    return (now - started).total_seconds() >= config.stuck_after_s


def _is_late_by_blocks(
    tx: TrackedTx, attempt: TrackedAttempt, seen: Observed, config: EngineConfig
) -> bool:
    # The N blocks count from the later of its send and the block that mined the wallet's
    # previous nonce: only from then can a block hold it. A drain sends a wallet's batch at
    # once, stamped with one head, and on a chain that mines one of the wallet's transactions
    # per block (anvil's automine, a sequencer's block per transaction, a congested chain) its
    # later nonces come next in line a block after another; counted from the send, the lowest
    # unmined one was bumped 0.05-0.19 s after its send while the chain mined the wallet
    # steadily (tests/integration/transactions/test_stuck.py). Next in line N blocks ago means
    # the wallet's mined count at head - N had reached its nonce; unknown (not read, or the
    # node did not answer), the count is from the send alone, as it was. So it is too for an
    # attempt whose fee cap is below the base fee: no block can hold it, next in line or not,
    # and counted from when it came next in line a wallet's underpriced window was bumped one
    # nonce per N blocks (each waiting for the bump of the one before to be mined) until the
    # time rule bumped the rest.
    sent = attempt.sent_at_block
    if sent is None or seen.head - sent < config.stuck_after_blocks:
        return False
    if _is_below_base_fee(attempt, seen):
        return True
    count = seen.nonce_blocks_ago.get(tx.from_address)
    return count is None or tx.nonce is None or count >= tx.nonce


def _is_below_base_fee(attempt: TrackedAttempt, seen: Observed) -> bool:
    """The attempt's fee cap cannot pay the next block's base fee (unknown: it can)."""
    return seen.base_fee_wei is not None and fee_cap_of(fees_of(attempt)) < seen.base_fee_wei


def may_be_stuck_by_blocks(tx: TrackedTx, *, head: int, stuck_after_blocks: int) -> bool:
    """Whether the wallet's mined count `stuck_after_blocks` back is worth asking for: the
    request's latest attempt was sent at least that long ago (is_stuck reads the count)."""
    if tx.nonce is None or not tx.attempts or tx.status is TxStatus.MINED:
        return False  # a mined request waits for its depth, not for a bump
    sent = latest_attempt(tx).sent_at_block
    return sent is not None and head - sent >= stuck_after_blocks


# How old a send the node's pool lists as queued is before it counts as parked (is_stranded):
# past a geth pool's promotion of a fresh send, well under stranded_held_after_s's default.
_PARKED_MIN_AGE_S = 0.2


def is_stranded(
    tx: TrackedTx, attempt: TrackedAttempt, seen: Observed, *, config: EngineConfig, now: datetime
) -> bool:
    """The next nonce to mine was sent, yet the node does not count it as pending.

    The node accepted it and then lost it from its executable set: evicted, or, on anvil,
    parked in the queued set by a race it never leaves (research/anvil-facts.md item 3: only a
    replacement with a higher fee cap frees it). Every later nonce of the wallet waits behind
    it, so it is replaced after `stranded_after_s` rather than the full `stuck_after_s`; and
    after `stranded_held_after_s` when the node still returns it by hash, which a node that
    merely lags behind the one it was sent to does not (it has not seen it yet); after
    `_PARKED_MIN_AGE_S` when the node's pool lists this latest attempt as queued
    (`seen.parked`): the node says it will not mine it. Not at once: geth holds a fresh send
    in `queued` until its pool's next promotion, and a backend behind a load balancer whose
    state lags lists it as queued too; an earlier attempt listed was replaced already.
    """
    if not may_be_stranded(tx, seen.latest_nonce, seen.pending_nonce):
        return False
    sent = attempt.last_sent_at
    if sent is None:
        return False
    wait_s = config.stranded_held_after_s if attempt.hash in seen.held else config.stranded_after_s
    if attempt.hash.lower() in seen.parked:
        wait_s = min(wait_s, _PARKED_MIN_AGE_S)
    return (now - sent).total_seconds() >= wait_s


def may_be_stranded(tx: TrackedTx, latest: dict[str, int], pending: dict[str, int]) -> bool:
    """A sent request holds the next nonce to mine, and the node's pending count leaves it out."""
    mined, counted = latest.get(tx.from_address), pending.get(tx.from_address)
    return (
        tx.status is TxStatus.SUBMITTED
        and tx.nonce is not None
        and mined == tx.nonce
        and counted is not None
        and counted <= tx.nonce
    )


def may_be_mined(
    tx: TrackedTx, latest: dict[str, int], *, now: datetime, resend_after_s: float
) -> bool:
    """Whether a receipt is worth asking for: the nonce is mined (by ours or not), the request
    was mined before (a reorg check), or it is due a resend decision anyway.

    A fresh request above the mined count has no receipt to find; skipping it keeps a round's
    cost with what moved, not with everything in flight. A node whose count lags its receipts
    only delays the receipt until the request is due, never loses it.
    """
    count = latest.get(tx.from_address)
    if tx.status is TxStatus.MINED or count is None or tx.nonce is None or tx.nonce < count:
        return True
    sent = [a.last_sent_at for a in tx.attempts if a.last_sent_at is not None]
    return not sent or (now - max(sent)).total_seconds() >= resend_after_s
