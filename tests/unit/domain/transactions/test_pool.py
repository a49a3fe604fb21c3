"""Reading the node's pool for parked sends (track/pool.py): which answers say "queued at the
mined count", which methods a node is remembered not to have, and the size gate on a whole
pool's content. The node is a scripted double; tests/integration/transactions/test_stranded.py
runs the same on anvil."""

import dataclasses
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest

from chainflow.core.types import TxHash
from chainflow.domain.transactions.track.pool import PoolSupport, is_unsupported, parked
from chainflow.infra.rpc.client import RpcCallError, RpcTransportError
from tests.unit.domain.transactions.test_observe import FROM, _in_flight

NOT_FOUND = RpcCallError(rpc_code=-32601, message="Method not found")


class FakePool:
    """Answers txpool_contentFrom / txpool_status / txpool_content from scripted values, as
    RpcClient does: an RpcCallError is a batch item's own answer (a single call raises it),
    any other exception fails the whole call; `batch_error` fails every batch whole. Records
    the methods asked and each batch's size."""

    def __init__(self, batch_error: Exception | None = None, **answers: Any) -> None:
        self.answers = answers
        self.batch_error = batch_error
        self.asked: list[str] = []
        self.batches: list[int] = []

    def _answer(self, method: str) -> Any:
        self.asked.append(method)
        answer = self.answers[method]
        if isinstance(answer, BaseException) and not isinstance(answer, RpcCallError):
            raise answer
        return answer

    async def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        assert not params  # txpool_status and txpool_content take none
        answer = self._answer(method)
        if isinstance(answer, RpcCallError):
            raise answer
        return answer

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        self.batches.append(len(calls))
        if self.batch_error is not None:
            raise self.batch_error
        return [self._answer(method) for method, _ in calls]


def _tx(nonce: int, tx_hash: str) -> dict[str, Any]:
    return {"nonce": hex(nonce), "hash": tx_hash}


SUSPECT = _in_flight(3)
OURS = SUSPECT.attempts[0].hash


async def test_queued_at_its_nonce_with_our_hash_is_parked() -> None:
    node = FakePool(txpool_contentFrom={"pending": {}, "queued": {"3": _tx(3, OURS.upper())}})
    assert await parked(node, [SUSPECT], PoolSupport()) == {OURS.lower()}


@pytest.mark.parametrize(
    "answer",
    [
        {"pending": {"3": _tx(3, OURS)}, "queued": {}},  # pending: the node will mine it
        {"pending": {}, "queued": {"3": _tx(3, "0x" + "ab" * 32)}},  # another tx at the nonce
        {"pending": {}, "queued": {"4": _tx(4, OURS)}},  # another nonce
        {"pending": {}, "queued": []},  # malformed
        None,
    ],
)
async def test_anything_else_is_not(answer: Any) -> None:
    assert await parked(FakePool(txpool_contentFrom=answer), [SUSPECT], PoolSupport()) == set()


async def test_only_the_latest_attempt_counts() -> None:
    (first,) = SUSPECT.attempts
    bump = dataclasses.replace(
        first, hash=TxHash("0x" + "cd" * 32), created_at=first.created_at + timedelta(seconds=1)
    )
    bumped = dataclasses.replace(SUSPECT, attempts=(first, bump))
    for listed, expected in ((OURS, set()), (bump.hash, {bump.hash})):
        node = FakePool(txpool_contentFrom={"pending": {}, "queued": {"3": _tx(3, listed)}})
        assert await parked(node, [bumped], PoolSupport()) == expected


async def test_many_wallets_are_read_in_batches_of_500() -> None:
    wallets = [f"0x{i:040x}" for i in range(1, 1_202)]
    suspects = [dataclasses.replace(SUSPECT, from_address=a) for a in wallets]
    node = FakePool(txpool_contentFrom={"pending": {}, "queued": {"3": _tx(3, OURS)}})
    assert await parked(node, suspects, PoolSupport()) == {OURS.lower()}
    assert node.batches == [500, 500, 201]


async def test_without_content_from_the_whole_pool_is_read_when_small() -> None:
    content = {"pending": {}, "queued": {FROM.lower(): {"3": _tx(3, OURS)}}}
    node = FakePool(
        txpool_contentFrom=NOT_FOUND,
        txpool_status={"pending": "0x0", "queued": "0x1"},
        txpool_content=content,
    )
    support = PoolSupport()
    assert await parked(node, [SUSPECT], support) == {OURS.lower()}
    assert not support.content_from
    assert support.content
    await parked(node, [SUSPECT], support)  # the next pass asks for the content alone
    assert node.asked == ["txpool_contentFrom"] + ["txpool_status", "txpool_content"] * 2


async def test_a_large_pool_is_not_downloaded() -> None:
    node = FakePool(
        txpool_contentFrom=NOT_FOUND,
        txpool_status={"pending": hex(1_500), "queued": hex(501)},
        txpool_content=AssertionError("read a large pool"),
    )
    assert await parked(node, [SUSPECT], PoolSupport()) == set()


async def test_a_node_with_neither_is_asked_once() -> None:
    node = FakePool(txpool_contentFrom=NOT_FOUND, txpool_status=NOT_FOUND)
    support = PoolSupport()
    assert await parked(node, [SUSPECT], support) == set()
    assert await parked(node, [SUSPECT], support) == set()
    assert node.asked == ["txpool_contentFrom", "txpool_status"]


@pytest.mark.parametrize(
    "failure",
    [
        RpcCallError(rpc_code=-32000, message="header not found"),
        RpcTransportError("timed out"),
    ],
)
async def test_another_failure_falls_back_for_this_pass_only(failure: Exception) -> None:
    node = FakePool(txpool_contentFrom=failure)
    support = PoolSupport()
    assert await parked(node, [SUSPECT], support) == set()
    assert support.content_from
    assert support.content


@pytest.mark.parametrize(
    "failure",
    [
        RpcCallError(rpc_code=-32600, message="batch too large"),
        RpcCallError(rpc_code=-32601, message="Method not found"),
        RpcTransportError("batch: answer is not a JSON-RPC array", is_answered=True),
    ],
)
async def test_a_whole_batch_refused_falls_back_for_this_pass_only(failure: Exception) -> None:
    node = FakePool(batch_error=failure, txpool_status=AssertionError("content read"))
    support = PoolSupport()
    assert await parked(node, [SUSPECT], support) == set()
    assert support.content_from
    assert support.content
    node.batch_error = None
    node.answers["txpool_contentFrom"] = {"pending": {}, "queued": {"3": _tx(3, OURS)}}
    assert await parked(node, [SUSPECT], support) == {OURS.lower()}  # asked again next pass


@pytest.mark.parametrize("count", [1, "0x1"])
async def test_pool_counts_as_numbers_or_hex(count: Any) -> None:
    content = {"pending": {}, "queued": {FROM.lower(): {"3": _tx(3, OURS)}}}
    node = FakePool(
        txpool_contentFrom=NOT_FOUND,
        txpool_status={"pending": 0, "queued": count},
        txpool_content=content,
    )
    assert await parked(node, [SUSPECT], PoolSupport()) == {OURS.lower()}


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (-32601, "Method not found", True),
        (-32600, "Invalid request", False),  # providers' "batch too large"
        (-32000, "the method txpool_contentFrom does not exist/is not available", True),
        (-32000, "txpool_content is not supported", True),
        (-32000, "nonce too low", False),
        (None, "timeout", False),
    ],
)
def test_is_unsupported(code: int | None, message: str, expected: bool) -> None:
    assert is_unsupported(RpcCallError(rpc_code=code, message=message)) is expected
