"""A receipt found by a tracking round (track/observe.py, decisions.decide) is at least one
block deep, even in a block mined after the round read the head: issue 17's batch runs
recorded most sends `mined` in one round and `confirmed` only in the next."""

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from chainflow.core.types import AttemptId, ChainId, Nonce, TxHash, TxId, WalletId, Wei
from chainflow.domain.transactions.config import ChainConfig, EngineConfig
from chainflow.domain.transactions.decisions import Action, Observed, Receipt, decide
from chainflow.domain.transactions.models import AttemptKind
from chainflow.domain.transactions.rows import InFlight, InFlightAttempt
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.transactions.track import judge
from chainflow.domain.transactions.track.judge import TrackerMemory
from chainflow.domain.transactions.track.observe import observe

FROM = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
NOW = datetime.now(UTC)


class _Node:
    """A node whose head is read at block 0x10 and which then serves receipts in later blocks
    (anvil mines each send at once while a round reads)."""

    def __init__(self, receipts: dict[str, Receipt]) -> None:
        self.receipts = receipts
        self.counts_asked: list[list[Any]] = []

    async def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        assert (method, list(params)) == ("eth_blockNumber", [])
        return "0x10"

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        answers: list[Any] = []
        for method, params in calls:
            if method == "eth_getTransactionCount":
                self.counts_asked.append(list(params))
                answers.append("0x3")  # nonces 0-2 mined
            elif method == "eth_getTransactionReceipt":
                answers.append(self.receipts.get(params[0]))
            else:
                answers.append(None)
        return answers


def _in_flight(nonce: int, *, sent_at_block: int | None = None) -> InFlight:
    hash_ = TxHash(f"0x{nonce:064x}")
    attempt = InFlightAttempt(
        id=AttemptId(uuid.uuid4()),
        kind=AttemptKind.ORIGINAL,
        nonce=Nonce(nonce),
        gas_limit=21_000,
        max_fee_per_gas_wei=Wei(10**9),
        max_priority_fee_per_gas_wei=Wei(10**9),
        gas_price_wei=None,
        raw=b"",
        hash=hash_,
        first_sent_at=NOW - timedelta(seconds=1),
        last_sent_at=NOW - timedelta(seconds=1),
        sent_at_block=sent_at_block,
        last_error=None,
        created_at=NOW - timedelta(seconds=1),
    )
    return InFlight(
        id=TxId(uuid.uuid4()),
        chain_id=ChainId(31337),
        wallet_id=WalletId(uuid.uuid4()),
        from_address=FROM,
        to_address=FROM,
        value_wei=Wei(1),
        data=b"",
        status=TxStatus.SUBMITTED,
        nonce=Nonce(nonce),
        cancel_requested=False,
        max_fee_per_gas_cap=None,
        max_priority_fee_per_gas_cap=None,
        created_at=NOW - timedelta(seconds=1),
        attempts=(attempt,),
    )


def _receipt(block: int) -> Receipt:
    return {"blockNumber": hex(block), "blockHash": f"0x{block:064x}", "status": "0x1"}


async def test_a_receipt_in_a_block_past_the_head_read_is_at_depth_one() -> None:
    rows = [_in_flight(n) for n in range(3)]
    hashes = [tx.attempts[0].hash for tx in rows]
    node = _Node({hashes[0]: _receipt(0x10), hashes[1]: _receipt(0x12)})
    seen = await observe(node, rows)
    # The head stays the one read: it is what the stuck-after-N-blocks count compares with.
    assert seen.head == 0x10
    one = ChainConfig(ChainId(31337), True, 1, 1.0, None, None)
    decided = [decide(tx, seen, chain=one, config=EngineConfig(), now=NOW) for tx in rows[:2]]
    # Block 0x12 was mined after the head was read: the node has it, so it is 1 deep.
    assert [d.action for d in decided] == [Action.FINALIZE, Action.FINALIZE]
    assert [d.depth for d in decided] == [1, 1]
    # Deeper confirmations still need the head to show them.
    three = ChainConfig(ChainId(31337), True, 3, 1.0, None, None)
    for tx in rows[:2]:
        got = decide(tx, seen, chain=three, config=EngineConfig(), now=NOW)
        assert (got.action, got.depth) == (Action.RECORD_RECEIPT, 1)
    seen_later = dataclasses.replace(seen, head=0x14)
    assert [
        decide(tx, seen_later, chain=three, config=EngineConfig(), now=NOW).depth for tx in rows[:2]
    ] == [5, 3]


def test_a_receipt_of_a_request_a_drain_of_this_process_is_sending_is_left_to_that_drain() -> None:
    """Read `signed` while a drain of this process sends it: its drain records the send, and
    a later pass the receipt (recorded here, it would wait on the drain's locks and skip the
    request's `submitted` event). Signed by no running drain here: recorded at once."""
    sent = _in_flight(0)
    fresh = dataclasses.replace(sent.attempts[0], last_sent_at=None)  # signed, not sent yet
    tx = dataclasses.replace(sent, status=TxStatus.SIGNED, attempts=(fresh,))
    seen = Observed(
        head=0x10, latest_nonce={FROM: 1}, receipts={tx.attempts[0].hash: _receipt(0x10)}
    )
    one = ChainConfig(ChainId(31337), True, 1, 1.0, None, None)

    def action(tx: InFlight, sending: set[TxId]) -> Action:
        decided = judge.judge(
            [tx], seen, chain=one, config=EngineConfig(), memory=TrackerMemory(), sending=sending
        )
        return decided[tx.id].action

    assert action(tx, {tx.id}) is Action.NONE
    assert action(tx, set()) is Action.FINALIZE
    assert action(tx, {TxId(uuid.uuid4())}) is Action.FINALIZE


def test_a_receipt_of_a_request_sent_before_is_recorded_while_its_lane_is_drained() -> None:
    """Left `signed` by an earlier send whose answer was lost (the node took it): its receipt
    is recorded even while a drain of this process still sends it (left to the drain, it
    stayed `signed`, unconfirmed, as long as the lane was busy)."""
    tx = dataclasses.replace(_in_flight(0), status=TxStatus.SIGNED)  # last_sent_at set
    seen = Observed(
        head=0x10, latest_nonce={FROM: 1}, receipts={tx.attempts[0].hash: _receipt(0x10)}
    )
    one = ChainConfig(ChainId(31337), True, 1, 1.0, None, None)
    decided = judge.judge(
        [tx],
        seen,
        chain=one,
        config=EngineConfig(),
        memory=TrackerMemory(),
        sending={tx.id},
    )
    assert decided[tx.id].action is Action.FINALIZE


async def test_the_mined_count_n_blocks_back_is_read_only_for_a_wallet_with_a_send_that_old() -> (
    None
):
    """is_stuck counts a request's N blocks from when its wallet's previous nonce was mined:
    the count at head - N says whether it was by then (one call per wallet, only when one of
    its attempts was sent at least N blocks ago)."""
    recent = [_in_flight(3, sent_at_block=0xE), _in_flight(4, sent_at_block=0xE)]
    node = _Node({})
    seen = await observe(node, recent, stuck_after_blocks=3)
    assert seen.nonce_blocks_ago == {}
    assert all(params[1] in ("latest", "pending") for params in node.counts_asked)
    old = [_in_flight(3, sent_at_block=0xD), _in_flight(4, sent_at_block=0xD)]
    node = _Node({})
    seen = await observe(node, old, stuck_after_blocks=3)
    assert seen.nonce_blocks_ago == {FROM: 3}
    assert [p for p in node.counts_asked if p[1] not in ("latest", "pending")] == [[FROM, "0xd"]]
