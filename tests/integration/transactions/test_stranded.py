"""A send parked in the node's queued set at the wallet's mined count is replaced once it is
0.2 s old (track/pool.py, decisions.is_stranded), not after `stranded_held_after_s`; a node
without the txpool methods falls back to that wait, and is asked only once per process.

The parked state is made as anvil's pool race makes it (research/anvil-facts.md item 3): the
send enters the pool while the node's count is one below its nonce, then the count reaches
its nonce with no block the pool would promote it in. Each test has its own anvil: a block
mined by another test could free it.
"""

import dataclasses
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.core.types import TxId
from chainflow.domain.transactions.models import AttemptKind, Transaction
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.wallets.models import Wallet
from chainflow.infra.rpc.client import RpcClient
from chainflow.infra.signing.keystore import MasterKey
from chainflow.workers.track import track_chain
from tests.support.chains import ANVIL_CHAIN_ID
from tests.support.chaos import chain_config, mining_stopped
from tests.support.engine import (
    TEST_CONFIG,
    EngineHarness,
    harness_fixture,
    has_status,
    open_engine_harness,
)
from tests.support.rpc_proxy import Fault, RpcProxy, serve_proxy

# Every time rule far away: only the pool's word can replace the parked send within the test.
FAR = dataclasses.replace(
    TEST_CONFIG,
    stuck_after_s=600.0,
    stuck_after_blocks=10_000,
    resend_after_s=600.0,
    stranded_after_s=30.0,
    stranded_held_after_s=30.0,
)
NONCE = 5  # the wallet's count before the send: the parked send needs one below it


far_harness = harness_fixture(own_anvil=True, config=FAR)


@pytest.fixture
async def no_txpool_proxy(own_anvil_url: str) -> AsyncIterator[RpcProxy]:
    """A node without the txpool methods, for the fallback: the tests' JSON-RPC proxy in front
    of anvil, answering txpool_* with -32601 as anvil does a method it does not know."""
    async with aiohttp.ClientSession() as http, serve_proxy(own_anvil_url, http) as proxy:
        proxy.fault = Fault.NO_TXPOOL
        yield proxy


async def park_a_send(harness: EngineHarness, anvil: RpcClient) -> tuple[Wallet, Transaction]:
    """A request the engine sent, parked in anvil's queued set at the wallet's mined count."""
    wallet = await harness.wallet()
    await anvil.call("anvil_setNonce", [wallet.address, hex(NONCE)])
    async with mining_stopped(anvil):
        tx_id = await harness.submit(wallet, value="1")
        (tx,) = await harness.run_until([tx_id], has_status(TxStatus.SUBMITTED))
        (attempt,) = tx.attempts
        assert tx.nonce == NONCE
        # Into the pool while the count is one below its nonce, then the count moves on.
        await anvil.call("anvil_dropTransaction", [attempt.hash])
        await anvil.call("anvil_setNonce", [wallet.address, hex(NONCE - 1)])
        await anvil.call("eth_sendRawTransaction", ["0x" + attempt.raw.hex()])
        await anvil.call("anvil_setNonce", [wallet.address, hex(NONCE)])
    # Automine is on again, and the node will not mine it: queued at the mined count.
    content = await anvil.call("txpool_content")
    queued = content["queued"][wallet.address.lower()]
    assert queued[str(NONCE)]["hash"].lower() == attempt.hash.lower()
    assert content["pending"].get(wallet.address.lower()) is None
    for tag in ("latest", "pending"):
        count = await anvil.call("eth_getTransactionCount", [wallet.address, tag])
        assert int(count, 16) == NONCE
    return wallet, tx


async def passes_until_replaced(
    harness: EngineHarness, tx_id: TxId, *, passes: int, within_s: float = 0.0
) -> Transaction | None:
    """Run tracking passes, `passes` of them and more until `within_s` is up; the request
    once it has a second attempt."""
    chain = await chain_config(harness)
    deadline = time.monotonic() + within_s
    done = 0
    while done < passes or time.monotonic() < deadline:
        await track_chain(harness.engine, chain)
        done += 1
        tx = await harness.get(tx_id)
        if len(tx.attempts) > 1:
            return tx
    return None


class TestParkedSend:
    async def test_a_send_the_pool_lists_as_queued_is_replaced_in_one_pass(
        self, far_harness: EngineHarness
    ) -> None:
        harness = far_harness
        wallet, tx = await park_a_send(harness, harness.rpc)
        # The pool's word counts once the send is 0.2 s old (decisions._PARKED_MIN_AGE_S):
        # passes until then, far inside FAR's 30 s time rules.
        replaced = await passes_until_replaced(harness, tx.id, passes=2, within_s=5.0)
        assert replaced is not None, "still parked after 5 s of passes"
        (tx,) = await harness.run_until_final([tx.id])
        assert tx.status is TxStatus.CONFIRMED
        mined = next(a for a in tx.attempts if a.hash == tx.final_hash)
        assert mined.kind is AttemptKind.BUMP
        assert mined.nonce == NONCE
        # The nonce was mined once, by the bump (the lane's lower nonces were set, not sent).
        assert await harness.chain_nonce(wallet) == NONCE + 1

    async def test_a_node_without_txpool_methods_waits_as_before_and_is_asked_once(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        no_txpool_proxy: RpcProxy,
        own_anvil_url: str,
        master_key: MasterKey,
    ) -> None:
        async with (
            open_engine_harness(
                sessionmaker, no_txpool_proxy.url, master_key, config=FAR
            ) as harness,
            aiohttp.ClientSession() as http,
        ):
            anvil = RpcClient(http, own_anvil_url, timeout_s=5)
            _, tx = await park_a_send(harness, anvil)
            assert await passes_until_replaced(harness, tx.id, passes=5) is None
            # contentFrom refused, then content's size probe: both remembered, not re-asked.
            asked = [m for m in no_txpool_proxy.received if m.startswith("txpool_")]
            assert asked == ["txpool_contentFrom", "txpool_status"]
            support = harness.engine.state.pools[ANVIL_CHAIN_ID]
            assert not support.content_from
            assert not support.content
            # The time rule is still there: brought near, it replaces the parked send.
            near = dataclasses.replace(FAR, stranded_held_after_s=0.01)
            ports = dataclasses.replace(harness.engine.ports, config=near)
            engine = dataclasses.replace(harness.engine, ports=ports)
            harness = dataclasses.replace(harness, engine=engine)
            assert await passes_until_replaced(harness, tx.id, passes=2) is not None
