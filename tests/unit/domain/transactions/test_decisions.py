"""The tracker's pure decision for one request, for each thing the chain can show."""

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.orm.attributes import set_committed_value

from chainflow.core.types import ChainId, Nonce, Wei
from chainflow.domain.transactions.config import ChainConfig, EngineConfig
from chainflow.domain.transactions.decisions import (
    Action,
    Decision,
    Observed,
    Receipt,
    Terms,
    decide,
    may_be_mined,
    may_be_stranded,
    may_be_stuck_by_blocks,
    replacement_terms,
)
from chainflow.domain.transactions.fees import FeeCaps
from chainflow.domain.transactions.models import (
    AttemptKind,
    AttemptStatus,
    Transaction,
    TxAttempt,
)
from chainflow.domain.transactions.state import TxStatus

NOW = datetime(2026, 1, 1, tzinfo=UTC)
FROM = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
CHAIN = ChainConfig(ChainId(1), True, 3, 12.0, None, None)
CONFIG = EngineConfig(stuck_after_blocks=3, stuck_after_s=30, resend_after_s=10)
GWEI = 10**9


def make_tx(
    status: TxStatus,
    *,
    sent_ago_s: float | None = 1,
    sent_at_block: int | None = 100,
    cancel: bool = False,
    kinds: tuple[AttemptKind, ...] = (AttemptKind.ORIGINAL,),
    fee_wei: int | None = None,
    cap_wei: int | None = None,
    last_error: str | None = None,
) -> Transaction:
    tx = Transaction(
        id=uuid.uuid4(),
        status=status,
        nonce=7,
        from_address=FROM,
        cancel_requested=cancel,
        max_fee_per_gas_cap=cap_wei,
    )
    sent = None if sent_ago_s is None else NOW - timedelta(seconds=sent_ago_s)
    attempts = [
        TxAttempt(
            id=uuid.uuid4(),
            kind=kind,
            status=AttemptStatus.SUBMITTED,
            nonce=7,
            hash=f"0x{i:064x}",
            raw=b"",
            first_sent_at=sent,
            last_sent_at=sent,
            sent_at_block=sent_at_block,
            created_at=NOW - timedelta(seconds=100 - i),
            max_fee_per_gas_wei=fee_wei,
            max_priority_fee_per_gas_wei=None if fee_wei is None else fee_wei // 10,
            last_error=last_error,
        )
        for i, kind in enumerate(kinds)
    ]
    set_committed_value(tx, "attempts", attempts)
    return tx


def seen(
    *,
    head: int = 101,
    count: int = 7,
    receipt_block: int | None = None,
    pending: int = 8,
    held: bool = False,
    base_fee: int | None = None,
    blocks_ago: int | None = None,
    parked: bool = False,
) -> Observed:
    receipts: dict[str, Receipt] = {}
    if receipt_block is not None:
        receipts[f"0x{0:064x}"] = {"blockNumber": hex(receipt_block), "blockHash": "0xb"}
    return Observed(
        head=head,
        latest_nonce={FROM: count},
        receipts=receipts,
        pending_nonce={FROM: pending},
        held=frozenset({f"0x{0:064x}"}) if held else frozenset(),
        base_fee_wei=base_fee,
        nonce_blocks_ago={} if blocks_ago is None else {FROM: blocks_ago},
        parked=frozenset({f"0x{0:064x}"}) if parked else frozenset(),
    )


@pytest.mark.parametrize(
    ("tx", "observed", "action"),
    [
        (make_tx(TxStatus.SUBMITTED), seen(head=102, receipt_block=100), Action.FINALIZE),
        (make_tx(TxStatus.SUBMITTED), seen(head=101, receipt_block=100), Action.RECORD_RECEIPT),
        (make_tx(TxStatus.SIGNED), seen(head=100, receipt_block=100), Action.RECORD_RECEIPT),
        (make_tx(TxStatus.MINED), seen(), Action.REORGED),
        (make_tx(TxStatus.SUBMITTED), seen(count=8), Action.FOREIGN),
        (make_tx(TxStatus.SIGNED, sent_ago_s=None, sent_at_block=None), seen(), Action.RESEND),
        (make_tx(TxStatus.SIGNED, sent_ago_s=1), seen(), Action.NONE),
        (make_tx(TxStatus.SIGNED, sent_ago_s=11), seen(), Action.RESEND),
        (make_tx(TxStatus.SUBMITTED, sent_ago_s=31), seen(), Action.BUMP),
        (make_tx(TxStatus.SUBMITTED, sent_at_block=98), seen(head=101), Action.BUMP),
        # ... counted from when it came next in line: nonce 6 was mined by block 98 (the
        # count at head - 3 is 7), or only after it (6): not stuck, it just came next in line
        (make_tx(TxStatus.SUBMITTED, sent_at_block=98), seen(blocks_ago=7), Action.BUMP),
        (make_tx(TxStatus.SUBMITTED, sent_at_block=98), seen(blocks_ago=6), Action.NONE),
        (make_tx(TxStatus.SUBMITTED, sent_at_block=99), seen(blocks_ago=7), Action.NONE),
        # ... and the time rule stays counted from the first send
        (make_tx(TxStatus.SUBMITTED, sent_ago_s=31), seen(blocks_ago=6), Action.BUMP),
        # ... but one whose fee cap is below the base fee counts from its send alone: no
        # block can hold it, and its whole window waiting one nonce per N blocks to come next
        # in line left it to the time rule
        (
            make_tx(TxStatus.SUBMITTED, sent_at_block=98, fee_wei=GWEI),
            seen(blocks_ago=6, base_fee=2 * GWEI),
            Action.BUMP,
        ),
        (
            make_tx(TxStatus.SUBMITTED, sent_at_block=99, fee_wei=GWEI),
            seen(blocks_ago=6, base_fee=2 * GWEI),
            Action.NONE,
        ),
        (
            make_tx(TxStatus.SUBMITTED, sent_at_block=98, fee_wei=2 * GWEI),
            seen(blocks_ago=6, base_fee=2 * GWEI),
            Action.NONE,
        ),
        (make_tx(TxStatus.SUBMITTED, cancel=True), seen(), Action.CANCEL),
        (
            make_tx(
                TxStatus.SUBMITTED, cancel=True, kinds=(AttemptKind.ORIGINAL, AttemptKind.CANCEL)
            ),
            seen(),
            Action.NONE,
        ),
        (make_tx(TxStatus.SUBMITTED, sent_ago_s=1), seen(), Action.NONE),
        # a bump no node accepted (underpriced) is bumped again once it is old enough
        (make_tx(TxStatus.SUBMITTED, sent_ago_s=None, sent_at_block=None), seen(), Action.BUMP),
        (make_tx(TxStatus.SUBMITTED, sent_ago_s=12, sent_at_block=101), seen(), Action.RESEND),
        # stranded: next to mine, sent 3 s ago, yet the node's pending count does not include it
        (make_tx(TxStatus.SUBMITTED, sent_ago_s=3), seen(pending=7), Action.BUMP),
        (make_tx(TxStatus.SUBMITTED, sent_ago_s=1), seen(pending=7), Action.NONE),  # too soon
        (make_tx(TxStatus.SUBMITTED, sent_ago_s=3), seen(pending=8), Action.NONE),  # pending
        (make_tx(TxStatus.SUBMITTED, sent_ago_s=3), seen(count=6, pending=6), Action.NONE),
        # ... and sooner when the node still returns it by hash: it has it, yet not as pending
        (make_tx(TxStatus.SUBMITTED, sent_ago_s=0.6), seen(pending=7, held=True), Action.BUMP),
        (make_tx(TxStatus.SUBMITTED, sent_ago_s=0.3), seen(pending=7, held=True), Action.NONE),
        (make_tx(TxStatus.SUBMITTED, sent_ago_s=0.6), seen(pending=7), Action.NONE),
        (make_tx(TxStatus.SUBMITTED, sent_ago_s=0.6), seen(pending=8, held=True), Action.NONE),
        # ... and sooner still when the node's pool lists it as queued at the mined count,
        # once the send is 0.2 s old (geth queues a fresh send until its pool's promotion)
        (make_tx(TxStatus.SUBMITTED, sent_ago_s=0.25), seen(pending=7, parked=True), Action.BUMP),
        (make_tx(TxStatus.SUBMITTED, sent_ago_s=0.01), seen(pending=7, parked=True), Action.NONE),
        (make_tx(TxStatus.SUBMITTED, sent_ago_s=0.15), seen(pending=7, parked=True), Action.NONE),
        # an earlier attempt listed does not count: the latest one replaced it
        (
            make_tx(TxStatus.SUBMITTED, sent_ago_s=0.25, kinds=(AttemptKind.ORIGINAL,) * 2),
            seen(pending=7, parked=True),
            Action.NONE,
        ),
        # listed as queued, yet the node counts it pending, or its nonce is not next: not now
        (make_tx(TxStatus.SUBMITTED, sent_ago_s=0.25), seen(pending=8, parked=True), Action.NONE),
        (
            make_tx(TxStatus.SUBMITTED, sent_ago_s=0.25),
            seen(count=6, pending=6, parked=True),
            Action.NONE,
        ),
    ],
)
def test_decide(tx: Transaction, observed: Observed, action: Action) -> None:
    assert decide(tx, observed, chain=CHAIN, config=CONFIG, now=NOW).action is action


WAIT = dataclasses.replace(CONFIG, fee_cap_wait_s=60)  # the attempts were signed 100 s ago
CAPPED_CHAIN = dataclasses.replace(CHAIN, max_fee_per_gas_cap=3 * GWEI)


def at_cap(status: TxStatus = TxStatus.SUBMITTED, **kw: Any) -> Transaction:
    """Stuck (sent 31 s ago), its attempt at the request's own cap of 3 gwei."""
    return make_tx(status, sent_ago_s=31, fee_wei=3 * GWEI, cap_wei=3 * GWEI, **kw)


@pytest.mark.parametrize(
    ("tx", "observed", "chain", "expected"),
    [
        # stuck under its cap: bumped
        (
            make_tx(TxStatus.SUBMITTED, sent_ago_s=31, fee_wei=GWEI, cap_wei=3 * GWEI),
            seen(),
            CHAIN,
            (Action.BUMP, False),
        ),
        # stuck at its cap, base fee unknown or payable: re-sent when due, reported capped
        (at_cap(), seen(), CHAIN, (Action.RESEND, True)),
        (at_cap(), seen(base_fee=2 * GWEI), CHAIN, (Action.RESEND, True)),
        # ... priced out by the base fee for fee_cap_wait_s: cancelled, whatever its own cap
        (at_cap(), seen(base_fee=30 * GWEI), CHAIN, (Action.CANCEL, False)),
        # ... unless the chain's cap leaves a cancel no room either: it waits, capped
        (at_cap(), seen(base_fee=30 * GWEI), CAPPED_CHAIN, (Action.RESEND, True)),
        # ... or a cancel is already out (it is bumped like any attempt)
        (
            at_cap(kinds=(AttemptKind.ORIGINAL, AttemptKind.CANCEL)),
            seen(base_fee=30 * GWEI),
            CHAIN,
            (Action.BUMP, False),
        ),
        # signed, refused as underpriced and stuck: bumped, then cancelled, like a sent one
        (
            make_tx(
                TxStatus.SIGNED,
                sent_ago_s=None,
                sent_at_block=None,
                fee_wei=GWEI,
                last_error="underpriced",
            ),
            seen(),
            CHAIN,
            (Action.BUMP, False),
        ),
        (
            at_cap(TxStatus.SIGNED, last_error="underpriced"),
            seen(base_fee=30 * GWEI),
            CHAIN,
            (Action.CANCEL, False),
        ),
        # signed and refused for want of funds: only re-sent, never bumped
        (
            at_cap(TxStatus.SIGNED, last_error="insufficient_funds"),
            seen(base_fee=30 * GWEI),
            CHAIN,
            (Action.RESEND, False),
        ),
        # a cancel asked for goes out from signed too, and above the request's own cap
        (at_cap(TxStatus.SIGNED, cancel=True), seen(), CHAIN, (Action.CANCEL, False)),
        (
            make_tx(TxStatus.SIGNED, sent_ago_s=1, cancel=True),
            seen(),
            CHAIN,
            (Action.CANCEL, False),
        ),
        # ... unless the chain's cap leaves it no room (+12.5 % above 3 gwei)
        (at_cap(cancel=True), seen(), CAPPED_CHAIN, (Action.RESEND, True)),
    ],
)
def test_decide_at_the_fee_cap(
    tx: Transaction, observed: Observed, chain: ChainConfig, expected: tuple[Action, bool]
) -> None:
    decision = decide(tx, observed, chain=chain, config=WAIT, now=NOW)
    assert (decision.action, decision.capped) == expected


def test_a_priced_out_request_waits_fee_cap_wait_s_after_its_last_attempt() -> None:
    tx, observed = at_cap(), seen(base_fee=30 * GWEI)
    patient = dataclasses.replace(CONFIG, fee_cap_wait_s=101)  # signed 100 s ago
    decision = decide(tx, observed, chain=CHAIN, config=patient, now=NOW)
    assert (decision.action, decision.capped) == (Action.RESEND, True)


@pytest.mark.parametrize("cancel", [False, True])
def test_a_cancel_is_bound_by_the_chain_caps_only_and_rises_by_the_bump_percent(
    cancel: bool,
) -> None:
    tx = at_cap()
    tx.max_priority_fee_per_gas_cap = Wei(GWEI)
    terms = replacement_terms(tx, CAPPED_CHAIN, CONFIG, cancel=cancel)
    if cancel:
        assert terms == Terms(FeeCaps(3 * GWEI, None), Decimal("12.5"))
    else:
        assert terms == Terms(FeeCaps(3 * GWEI, GWEI), Decimal(10))


@pytest.mark.parametrize(
    ("status", "count", "pending", "expected"),
    [
        (TxStatus.SUBMITTED, 7, 7, True),  # next to mine, not counted as pending
        (TxStatus.SUBMITTED, 7, 8, False),  # counted
        (TxStatus.SUBMITTED, 6, 6, False),  # not the next nonce
        (TxStatus.SIGNED, 7, 7, False),  # never sent: a resend, not a strand
        (TxStatus.MINED, 7, 7, False),
    ],
)
def test_may_be_stranded(status: TxStatus, count: int, pending: int, expected: bool) -> None:
    tx = make_tx(status)
    assert may_be_stranded(tx, {FROM: count}, {FROM: pending}) is expected


@pytest.mark.parametrize(
    ("sent_at_block", "nonce", "expected"),
    [
        (98, 7, True),  # sent 3 blocks before head 101
        (99, 7, False),  # 2 blocks
        (None, 7, False),  # never accepted by a node: no block to count from
        (98, None, False),
    ],
)
def test_may_be_stuck_by_blocks(
    sent_at_block: int | None, nonce: int | None, expected: bool
) -> None:
    tx = make_tx(TxStatus.SUBMITTED, sent_at_block=sent_at_block)
    tx.nonce = None if nonce is None else Nonce(nonce)
    assert may_be_stuck_by_blocks(tx, head=101, stuck_after_blocks=3) is expected


@pytest.mark.parametrize(
    ("status", "count", "sent_ago_s", "expected"),
    [
        (TxStatus.SUBMITTED, 7, 1, False),  # fresh, above the mined count: nothing to find
        (TxStatus.SUBMITTED, 8, 1, True),  # its nonce is mined: ours or a foreign one
        (TxStatus.SUBMITTED, 7, 10, True),  # due a resend decision: look anyway
        (TxStatus.SUBMITTED, None, 1, True),  # no count for the address: look
        (TxStatus.SIGNED, 7, None, True),  # never sent
        (TxStatus.MINED, 7, 1, True),  # mined before: re-check for a reorg
    ],
)
def test_may_be_mined(
    status: TxStatus, count: int | None, sent_ago_s: float | None, expected: bool
) -> None:
    tx = make_tx(status, sent_ago_s=sent_ago_s)
    latest = {} if count is None else {FROM: count}
    assert may_be_mined(tx, latest, now=NOW, resend_after_s=10) is expected


@pytest.mark.parametrize(
    ("action", "kind", "status", "expected"),
    [
        (Action.FINALIZE, AttemptKind.ORIGINAL, "0x0", True),
        (Action.FINALIZE, AttemptKind.BUMP, "0x0", True),
        (Action.FINALIZE, AttemptKind.ORIGINAL, "0x1", False),
        (Action.FINALIZE, AttemptKind.CANCEL, "0x0", False),  # the cancel won: cancelled
        (Action.FINALIZE, AttemptKind.ORIGINAL, None, False),  # no status (pre-Byzantium)
        (Action.RECORD_RECEIPT, AttemptKind.ORIGINAL, "0x0", False),  # not final yet
    ],
)
def test_is_final_revert(
    action: Action, kind: AttemptKind, status: str | None, expected: bool
) -> None:
    """One test for the tracker's record (mined.py) and its revert reasons (reverts.py)."""
    attempt = make_tx(TxStatus.MINED, kinds=(kind,)).attempts[0]
    receipt: Receipt = {"blockHash": "0x" + "11" * 32, "blockNumber": "0x64"}
    if status is not None:
        receipt["status"] = status
    assert Decision(action, attempt, receipt).is_final_revert is expected


def test_a_mined_request_is_not_asked_about_by_blocks() -> None:
    """A request waiting for its depth is never bumped: no count N blocks back for it."""
    tx = make_tx(TxStatus.MINED, sent_at_block=90)
    tx.nonce = Nonce(7)
    assert may_be_stuck_by_blocks(tx, head=101, stuck_after_blocks=3) is False


def below_gap(observed: Observed) -> Observed:
    """The same view with the wallet's lane below a nonce gap (track/gaps.py)."""
    return dataclasses.replace(observed, gapped=frozenset({FROM}))


@pytest.mark.parametrize(
    ("tx", "observed", "action"),
    [
        # stuck by time, by blocks, stranded, a cancel asked: no new attempt, only its bytes
        (make_tx(TxStatus.SUBMITTED, sent_ago_s=31), seen(count=5, pending=5), Action.RESEND),
        (make_tx(TxStatus.SUBMITTED, sent_at_block=98), seen(count=5, pending=5), Action.NONE),
        (make_tx(TxStatus.SUBMITTED, cancel=True), seen(count=5, pending=5), Action.NONE),
        (make_tx(TxStatus.SUBMITTED, cancel=True, sent_ago_s=11), seen(), Action.RESEND),
        (make_tx(TxStatus.SIGNED, sent_ago_s=None, sent_at_block=None), seen(), Action.RESEND),
        # a receipt is still recorded
        (make_tx(TxStatus.SUBMITTED), seen(head=102, receipt_block=100), Action.FINALIZE),
    ],
)
def test_a_request_below_a_nonce_gap_is_never_replaced(
    tx: Transaction, observed: Observed, action: Action
) -> None:
    decision = decide(tx, below_gap(observed), chain=CHAIN, config=CONFIG, now=NOW)
    assert decision.action is action
    assert not decision.capped
