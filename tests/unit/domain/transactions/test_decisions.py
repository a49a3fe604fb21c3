"""The tracker's pure decision for one request, for each thing the chain can show."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.orm.attributes import set_committed_value

from chainflow.domain.transactions.decisions import (
    Action,
    Observed,
    decide,
    may_be_mined,
    may_be_stranded,
)
from chainflow.domain.transactions.models import (
    AttemptKind,
    AttemptStatus,
    Transaction,
    TxAttempt,
)
from chainflow.domain.transactions.runtime import ChainConfig, EngineConfig
from chainflow.domain.transactions.state import TxStatus

NOW = datetime(2026, 1, 1, tzinfo=UTC)
FROM = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
CHAIN = ChainConfig(1, True, 3, 12.0, None, None)
CONFIG = EngineConfig(stuck_after_blocks=3, stuck_after_s=30, resend_after_s=10)


def make_tx(
    status: TxStatus,
    *,
    sent_ago_s: float | None = 1,
    sent_at_block: int | None = 100,
    cancel: bool = False,
    kinds: tuple[AttemptKind, ...] = (AttemptKind.ORIGINAL,),
) -> Transaction:
    tx = Transaction(
        id=uuid.uuid4(), status=status, nonce=7, from_address=FROM, cancel_requested=cancel
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
) -> Observed:
    receipts: dict[str, dict[str, Any]] = {}
    if receipt_block is not None:
        receipts[f"0x{0:064x}"] = {"blockNumber": hex(receipt_block), "blockHash": "0xb"}
    return Observed(
        head=head,
        latest_nonce={FROM: count},
        receipts=receipts,
        pending_nonce={FROM: pending},
        held=frozenset({f"0x{0:064x}"}) if held else frozenset(),
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
    ],
)
def test_decide(tx: Transaction, observed: Observed, action: Action) -> None:
    assert decide(tx, observed, chain=CHAIN, config=CONFIG, now=NOW).action is action


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
