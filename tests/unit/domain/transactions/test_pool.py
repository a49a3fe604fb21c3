"""Reading the node's pool for parked sends (track/pool.py): which answers say "queued at the
mined count", which methods a node is remembered not to have, and the size gate on a whole
pool's content. The node is a scripted double; tests/integration/transactions/test_stranded.py
runs the same on anvil."""

from collections.abc import Sequence
from typing import Any

import pytest

from chainflow.domain.transactions.track.pool import PoolSupport, is_unsupported, parked
from chainflow.infra.rpc.client import RpcCallError, RpcTransportError
from tests.unit.domain.transactions.test_observe import FROM, _in_flight

NOT_FOUND = RpcCallError(rpc_code=-32601, message="Method not found")


class _Pool:
    """Answers txpool_contentFrom / txpool_status / txpool_content from scripted values (an
    exception is raised for the whole call); records what it was asked."""

    def __init__(self, **answers: Any) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def _answer(self, method: str) -> Any:
        self.asked.append(method)
        answer = self.answers[method]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        assert not params  # txpool_status and txpool_content take none
        return self._answer(method)

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        return [self._answer(method) for method, _ in calls]


def _tx(nonce: int, tx_hash: str) -> dict[str, Any]:
    return {"nonce": hex(nonce), "hash": tx_hash}


SUSPECT = _in_flight(3)
OURS = SUSPECT.attempts[0].hash


async def test_queued_at_its_nonce_with_our_hash_is_parked() -> None:
    node = _Pool(txpool_contentFrom={"pending": {}, "queued": {"3": _tx(3, OURS.upper())}})
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
    assert await parked(_Pool(txpool_contentFrom=answer), [SUSPECT], PoolSupport()) == set()


async def test_without_content_from_the_whole_pool_is_read_when_small() -> None:
    content = {"pending": {}, "queued": {FROM.lower(): {"3": _tx(3, OURS)}}}
    node = _Pool(
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
    node = _Pool(
        txpool_contentFrom=NOT_FOUND,
        txpool_status={"pending": hex(1_500), "queued": hex(501)},
        txpool_content=AssertionError("read a large pool"),
    )
    assert await parked(node, [SUSPECT], PoolSupport()) == set()


async def test_a_node_with_neither_is_asked_once() -> None:
    node = _Pool(txpool_contentFrom=NOT_FOUND, txpool_status=NOT_FOUND)
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
    node = _Pool(txpool_contentFrom=failure)
    support = PoolSupport()
    assert await parked(node, [SUSPECT], support) == set()
    assert support.content_from
    assert support.content


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (-32601, "Method not found", True),
        (-32600, "Invalid request", True),
        (-32000, "the method txpool_contentFrom does not exist/is not available", True),
        (-32000, "txpool_content is not supported", True),
        (-32000, "nonce too low", False),
        (None, "timeout", False),
    ],
)
def test_is_unsupported(code: int | None, message: str, expected: bool) -> None:
    assert is_unsupported(RpcCallError(rpc_code=code, message=message)) is expected
