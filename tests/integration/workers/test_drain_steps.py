"""A drain's next step against the node's mining (workers/drain.py, docs/performance.md items
37 and 50): its room is read once the node has answered the last step's sends, and read again
after short pauses while the node still mines them, never beyond the in-flight limit."""

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from chainflow.core.types import TxId
from chainflow.domain.chains import service as chains
from chainflow.domain.transactions.config import ChainConfig
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.wallets.models import Wallet
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.rpc.client import RpcClient, RpcTransportError
from chainflow.workers.drain import _MINING_PAUSES_S, drain_lane
from chainflow.workers.engine import Engine
from tests.support.chains import ANVIL_CHAIN_ID
from tests.support.chaos import mining_stopped
from tests.support.engine import EngineHarness, harness_fixture, has_status

harness = harness_fixture()


class _CountingRpc:
    """The harness's JSON-RPC to the real anvil, counting the lanes' count reads; with
    `mine_after_unmined`, a block is mined right after answering a read that found the lane's
    nonces in the pool and not mined: the node mines a step's sends a moment after it
    answered them, as anvil does on a busy machine (docs/performance.md item 50)."""

    def __init__(
        self, rpc: RpcClient, *, mine_after_unmined: bool, answered_reads: int | None = None
    ) -> None:
        self.rpc = rpc
        self.mine_after_unmined = mine_after_unmined
        self.answered_reads = answered_reads  # later count reads find the node unreachable
        self.count_reads = 0
        self.mined = 0

    async def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        return await self.rpc.call(method, params)

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        counting = [method for method, _ in calls] == ["eth_getTransactionCount"] * 2
        answered = self.answered_reads
        if counting and answered is not None and self.count_reads >= answered:
            self.count_reads += 1
            raise RpcTransportError("the node is unreachable (test)")
        answers = await self.rpc.batch(calls)
        if counting:
            self.count_reads += 1
            mined, pending = (int(answer, 16) for answer in answers)
            if self.mine_after_unmined and pending > mined:
                await self.rpc.call("evm_mine")
                self.mined += 1
        return answers


async def _deep_lane(
    harness: EngineHarness, rpc: _CountingRpc, *, requests: int
) -> tuple[Engine, ChainConfig, Wallet, list[TxId]]:
    """The harness's engine with windows of 3, 3 in flight, on `rpc`; a wallet with
    `requests` queued."""
    ports = harness.engine.ports
    config = replace(ports.config, max_in_flight_per_lane=3, batch_size=3)
    engine = replace(harness.engine, ports=replace(ports, config=config, rpc={ANVIL_CHAIN_ID: rpc}))
    wallet = await harness.wallet()
    ids = [await harness.submit(wallet, value=str(i + 1)) for i in range(requests)]
    async with unit_of_work(harness.sessionmaker) as session:
        chain = ChainConfig.of(await chains.get_chain(session, ANVIL_CHAIN_ID))
    return engine, chain, wallet, ids


async def test_a_step_whose_sends_the_node_mines_after_answering_goes_on_full(
    harness: EngineHarness,
) -> None:
    """The node answers a window's sends and mines them only after the first read of the
    counts: the drain reads them again, signs the next window whole in the same drain, and
    the nonces follow each other."""
    rpc = _CountingRpc(harness.rpc, mine_after_unmined=True)
    engine, chain, wallet, ids = await _deep_lane(harness, rpc, requests=7)
    async with mining_stopped(harness.rpc):
        assert await drain_lane(engine, chain, wallet.id) == 7  # windows of 3, 3 and 1
        assert rpc.mined == 2  # each later step's room was read once its window was mined
    rows = await harness.run_until(ids, has_status(TxStatus.CONFIRMED))
    assert [tx.nonce for tx in rows] == list(range(7))
    assert await harness.chain_nonce(wallet) == 7


async def test_a_step_on_a_node_that_does_not_mine_reads_the_counts_a_few_times_and_ends(
    harness: EngineHarness,
) -> None:
    """Nothing mined: the next step signs nothing beyond the limit, and its room costs the
    first read and one per pause only (a chain with block times)."""
    rpc = _CountingRpc(harness.rpc, mine_after_unmined=False)
    engine, chain, wallet, ids = await _deep_lane(harness, rpc, requests=4)
    async with mining_stopped(harness.rpc):
        assert await drain_lane(engine, chain, wallet.id) == 3
        # the drain's own read, then the next step's first read and one after each pause
        assert rpc.count_reads == 2 + len(_MINING_PAUSES_S)
    rows = await harness.run_until(ids, has_status(TxStatus.CONFIRMED))
    assert sorted(tx.nonce or 0 for tx in rows) == list(range(4))


async def test_a_step_whose_counts_the_node_stops_answering_reads_no_more_and_ends(
    harness: EngineHarness,
) -> None:
    """The node stops answering while a step's sends are unmined: one failed read ends the
    pauses (no read after it), the drain ends with what it signed, and the rest is drained
    later."""
    rpc = _CountingRpc(harness.rpc, mine_after_unmined=False, answered_reads=2)
    engine, chain, wallet, ids = await _deep_lane(harness, rpc, requests=4)
    async with mining_stopped(harness.rpc):
        assert await drain_lane(engine, chain, wallet.id) == 3
        assert rpc.count_reads == 3  # the drain's, the next step's first, one that failed
    rows = await harness.run_until(ids, has_status(TxStatus.CONFIRMED))
    assert sorted(tx.nonce or 0 for tx in rows) == list(range(4))
