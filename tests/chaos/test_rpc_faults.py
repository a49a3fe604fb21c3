"""A fault-injecting JSON-RPC proxy between real worker processes and anvil: timeouts, 5xx,
resets, 429s, answers lost after the node acted, a lagging node, an endpoint on the wrong
chain, one endpoint of two down. Whatever the node does, every request ends terminal, once."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chainflow.domain.transactions.state import TxStatus
from tests.chaos.cluster import SEEDS, open_cluster
from tests.support.databases import REDIS_URL
from tests.support.polling import eventually
from tests.support.rpc_proxy import Fault, serve_proxy

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.parametrize("dialect", ["postgresql"], indirect=True),
]

MIX = {
    Fault.HTTP_500: 0.05,
    Fault.HTTP_502: 0.05,
    Fault.HTTP_429: 0.05,
    Fault.DROP: 0.05,
    Fault.LOSE_RESPONSE: 0.05,
    Fault.DELAY: 0.05,
    Fault.LAG: 0.05,
}


@SEEDS
async def test_random_faults_on_the_only_endpoint(
    seed: int, database_url: str, anvil: str, tmp_path: Path
) -> None:
    async with aiohttp.ClientSession() as http, serve_proxy(anvil, http) as proxy:
        proxy.mix, proxy.delay_s, proxy.retry_after_s = dict(MIX), 2.0, 1
        proxy.rng.seed(seed)
        async with open_cluster(
            tmp_path,
            database_url,
            anvil,
            rpc_urls=[proxy.url],
            redis_url=REDIS_URL,
            rpc_timeout_s="1",
            resend_after_s="1",
            stuck_after_s="5",
            # Three faults in a row open the only endpoint's breaker: at the default 30 s, the
            # wave waited 30 of its 50 s for the probe (2026-12-06); 2 s still opens and probes it.
            rpc_breaker_open_s="2",
        ) as cluster:
            # Waves of work until every kind of fault has hit a worker mid-flight.
            for _ in range(8):
                await cluster.submit(4)
                await cluster.settle(timeout_s=120)
                if all(proxy.injected.get(fault, 0) > 0 for fault in MIX):
                    break
            assert all(proxy.injected.get(fault, 0) > 0 for fault in MIX), proxy.injected
            assert await cluster.violations() == []
    assert "eth_sendRawTransaction" in proxy.forwarded


# What a broken node or a proxy in the way could answer instead of the node's result: each
# either raised deep inside a round (retried on the same endpoint forever) or was read as a
# wrong number, before the client checked answers (infra/rpc/answers.py).
CORRUPTIONS: dict[str, Callable[[Any], Any]] = {
    "eth_blockNumber": lambda _: "0xzz",
    "eth_getTransactionCount": lambda _: "0x_1",
    "eth_estimateGas": lambda _: " 0x5208",
    "eth_feeHistory": lambda history: {**history, "baseFeePerGas": ["0x"]},
    "eth_getTransactionReceipt": lambda receipt: receipt and {**receipt, "blockNumber": "-0x1"},
}


@pytest.mark.parametrize("fault", [Fault.DROP, Fault.HTTP_500, Fault.WRONG_CHAIN, Fault.CORRUPT])
async def test_first_of_two_endpoints_broken(
    fault: Fault, database_url: str, anvil: str, tmp_path: Path
) -> None:
    async with (
        aiohttp.ClientSession() as http,
        serve_proxy(anvil, http, path="/broken") as broken,
        serve_proxy(anvil, http, path="/healthy") as healthy,
    ):
        broken.fault, broken.corrupt = fault, dict(CORRUPTIONS)
        # CORRUPT: the breaker closes again soon after each opening (its probe, eth_chainId,
        # is answered well), so that the endpoint keeps being asked what it answers badly.
        async with open_cluster(
            tmp_path,
            database_url,
            anvil,
            rpc_urls=[broken.url, healthy.url],
            redis_url=REDIS_URL,
            rpc_timeout_s="1",
            rpc_breaker_open_s="0.01" if fault is Fault.CORRUPT else "30",  # 30: the default
        ) as cluster:
            await cluster.submit(10)
            await cluster.settle(timeout_s=120)
            assert await cluster.violations() == []
            assert await cluster.count(TxStatus.CONFIRMED) == 30
    if fault is Fault.CORRUPT:
        # Each bad answer of a round's reads was given. Not always the receipts': a round's
        # bad block number and counts can open the breaker just before its receipts batch,
        # which then goes to the healthy endpoint (2 runs in 7, review); their failover is
        # tests/integration/rpc/test_endpoints.py's.
        assert set(CORRUPTIONS) - {"eth_getTransactionReceipt"} <= set(broken.forwarded)
        return
    assert "eth_sendRawTransaction" in healthy.forwarded
    if fault is Fault.WRONG_CHAIN:
        # An endpoint on another chain is never trusted with a transaction.
        assert "eth_sendRawTransaction" not in broken.forwarded
        assert "eth_sendRawTransaction" not in broken.received


async def test_lagging_node_then_caught_up(database_url: str, anvil: str, tmp_path: Path) -> None:
    """Stale nonces and missing receipts for a while must not reuse a nonce or resend twice
    into execution; when the node catches up, everything confirms once."""
    async with (
        aiohttp.ClientSession() as http,
        serve_proxy(anvil, http) as proxy,
        open_cluster(
            tmp_path,
            database_url,
            anvil,
            rpc_urls=[proxy.url],
            redis_url=REDIS_URL,
            resend_after_s="0.5",
            stuck_after_s="1",
        ) as cluster,
    ):
        await cluster.submit(5)
        proxy.fault = Fault.LAG  # from here the node's view of nonces and head is frozen
        await cluster.submit(10)

        async def lagged_long_enough() -> bool:
            # Every transfer executed on chain, and the workers kept asking the stale
            # node (past stuck_after_s, so bumps and resends met "nonce too low").
            counts = [await cluster.chain_nonce(w) for w in cluster.wallets]
            return counts == [15] * 3 and proxy.injected.get(Fault.LAG, 0) >= 300

        await eventually(lagged_long_enough, timeout_s=60, interval_s=0.2)
        assert await cluster.count(TxStatus.CONFIRMED) < 45  # the lag was felt
        proxy.fault = Fault.NONE
        await cluster.settle(timeout_s=120)
        assert await cluster.violations() == []
        assert await cluster.count(TxStatus.CONFIRMED) == 45
    assert proxy.injected.get(Fault.LAG, 0) > 0
