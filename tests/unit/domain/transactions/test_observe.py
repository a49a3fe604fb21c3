"""What the tracker reads of the chain (track/observe.py): a receipt's block counts as seen,
so a send mined while the round read its receipts is at depth 1, not 0 (issue 17's batch
runs: most sends were recorded `mined` in one round and `confirmed` only in the next)."""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from chainflow.core.types import AttemptId, ChainId, Nonce, TxHash, TxId, WalletId, Wei
from chainflow.domain.transactions.config import ChainConfig, EngineConfig
from chainflow.domain.transactions.decisions import Action, decide
from chainflow.domain.transactions.models import AttemptKind
from chainflow.domain.transactions.rows import InFlight, InFlightAttempt
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.transactions.track.observe import observe

FROM = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
NOW = datetime.now(UTC)


class _Node:
    """A node whose head is read at block 0x10 and which then serves receipts in later blocks
    (anvil mines each send at once while a round reads)."""

    def __init__(self, receipts: dict[str, dict[str, str]]) -> None:
        self.receipts = receipts

    async def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        assert (method, list(params)) == ("eth_blockNumber", [])
        return "0x10"

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        answers: list[Any] = []
        for method, params in calls:
            if method == "eth_getTransactionCount":
                answers.append("0x3")  # nonces 0-2 mined
            elif method == "eth_getTransactionReceipt":
                answers.append(self.receipts.get(params[0]))
            else:
                answers.append(None)
        return answers


def _in_flight(nonce: int) -> InFlight:
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
        sent_at_block=None,
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


def _receipt(block: int) -> dict[str, str]:
    return {"blockNumber": hex(block), "blockHash": f"0x{block:064x}", "status": "0x1"}


async def test_a_receipt_in_a_block_past_the_head_read_counts_that_block_as_seen() -> None:
    rows = [_in_flight(n) for n in range(3)]
    hashes = [tx.attempts[0].hash for tx in rows]
    node = _Node({hashes[0]: _receipt(0x10), hashes[1]: _receipt(0x12)})
    seen = await observe(node, rows)
    assert seen.head == 0x12  # the node served a receipt in block 0x12: it has that block
    one = ChainConfig(ChainId(31337), True, 1, 1.0, None, None)
    decided = [decide(tx, seen, chain=one, config=EngineConfig(), now=NOW) for tx in rows[:2]]
    assert [d.action for d in decided] == [Action.FINALIZE, Action.FINALIZE]
    assert [d.depth for d in decided] == [3, 1]
    # Deeper confirmations still need the head to show them: block 0x12 is at depth 1 of 3.
    three = ChainConfig(ChainId(31337), True, 3, 1.0, None, None)
    assert decide(rows[1], seen, chain=three, config=EngineConfig(), now=NOW).action is (
        Action.RECORD_RECEIPT
    )
    assert decide(rows[0], seen, chain=three, config=EngineConfig(), now=NOW).action is (
        Action.FINALIZE
    )


async def test_without_receipts_the_head_is_the_one_read() -> None:
    seen = await observe(_Node({}), [_in_flight(5)])  # nonce 5: not mined, no receipt asked
    assert seen.head == 0x10
    assert seen.receipts == {}
