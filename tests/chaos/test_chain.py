"""Chain-side faults under load, against real worker processes: dropped transactions, mining
stopped, base-fee spikes above the fee cap, shallow reorgs, the key used by an outside sender,
a wallet without funds. Every request ends terminal, executed at most once, none above a cap,
and a stuck wallet does not hold up the others."""

import asyncio
import random
from pathlib import Path

import pytest
from eth_account import Account

from chainflow.domain.transactions.state import TxStatus
from chainflow.infra.rpc.client import RpcCallError
from tests.chaos.cluster import SEEDS, SINK, ChaosWallet, Cluster, open_cluster
from tests.support.databases import REDIS_URL
from tests.support.polling import eventually

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.parametrize("dialect", ["postgresql"], indirect=True),
]
GWEI = 10**9
CAP_WEI = 60 * GWEI


async def chain_monkey(cluster: Cluster, rounds: int, rng: random.Random) -> list[str]:
    """Apply one random chain fault per round while blocks keep coming; returns what it did."""
    rpc, done = cluster.rpc, []
    for _ in range(rounds):
        fault = rng.choice(["drop", "pause", "spike", "reorg", "blocks"])
        if fault == "drop":
            await rpc.call("anvil_dropAllTransactions")
        elif fault == "pause":
            await rpc.call("evm_setAutomine", [False])
            await asyncio.sleep(rng.uniform(0.5, 2.0))  # mining stopped for a while
            await rpc.call("evm_setAutomine", [True])
        elif fault == "spike":  # above the chain's cap: bumps must stop at the cap
            await rpc.call("anvil_setNextBlockBaseFeePerGas", [hex(2 * CAP_WEI)])
            await rpc.call("evm_mine")
        elif fault == "reorg":
            depth = min(rng.randint(1, 2), int(await rpc.call("eth_blockNumber"), 16) - 1)
            if depth >= 1:  # anvil refuses a reorg deeper than the chain
                await rpc.call("anvil_reorg", [depth, []])
            else:
                fault = "blocks"
        for _ in range(rng.randint(1, 4)):
            await rpc.call("evm_mine")
            await asyncio.sleep(0.1)  # block time
        done.append(fault)
    return done


@SEEDS
async def test_chain_faults_under_load(
    seed: int, database_url: str, anvil: str, tmp_path: Path
) -> None:
    rng = random.Random(seed)  # noqa: S311 - reproducible chaos
    async with open_cluster(
        tmp_path,
        database_url,
        anvil,
        redis_url=REDIS_URL,
        workers=2,
        wallets=3,
        chain={"confirmations": 3, "max_fee_per_gas_cap": CAP_WEI},
        stuck_after_s="1",
        stuck_after_blocks="2",
        resend_after_s="0.5",
    ) as cluster:
        load = asyncio.create_task(cluster.submit(20))
        done = await chain_monkey(cluster, 14, rng)
        await load

        async def settled() -> bool:
            await cluster.rpc.call("evm_mine")  # blocks keep coming, as on a real chain
            return await cluster.count(TxStatus.CONFIRMED) == 60

        await eventually(settled, timeout_s=180, interval_s=0.2)
        assert set(done) >= {"drop", "pause", "spike", "reorg"}, done
        assert await cluster.violations() == []


async def send_outside(cluster: Cluster, wallet: ChaosWallet) -> str:
    """The same key used by another program: a transfer at the chain's pending nonce."""
    account = Account.from_key(wallet.private_key)
    nonce = await cluster.chain_nonce(wallet, "pending")
    signed = account.sign_transaction(
        {
            "chainId": 31337,
            "nonce": nonce,
            "to": SINK,
            "value": 7,
            "gas": 21_000,
            "maxFeePerGas": 50 * GWEI,
            "maxPriorityFeePerGas": 2 * GWEI,
        }
    )
    try:
        return str(
            await cluster.rpc.call("eth_sendRawTransaction", ["0x" + signed.raw_transaction.hex()])
        )
    except RpcCallError:  # lost the race for that nonce to Chainflow: nothing was sent
        return ""


async def test_key_used_by_an_outside_sender(database_url: str, anvil: str, tmp_path: Path) -> None:
    async with open_cluster(
        tmp_path,
        database_url,
        anvil,
        redis_url=REDIS_URL,
        workers=2,
        wallets=2,
        foreign_nonce_grace_s="2",
    ) as cluster:
        wallet = cluster.wallets[0]
        load = asyncio.create_task(cluster.submit(20))
        outside = [await send_outside(cluster, wallet) for _ in range(6)]
        await load
        await cluster.settle(timeout_s=120)
        foreign: list[int] = []
        for tx_hash in filter(None, outside):
            receipt = await cluster.rpc.call("eth_getTransactionReceipt", [tx_hash])
            if receipt:
                found = await cluster.rpc.call("eth_getTransactionByHash", [tx_hash])
                foreign.append(int(found["nonce"], 16))
        assert foreign, "no outside transaction got in: the scenario tested nothing"
        assert await cluster.violations(foreign_nonces={wallet.address: foreign}) == []
        # The other wallet never noticed.
        assert await cluster.chain_nonce(cluster.wallets[1]) == 20


async def test_unfunded_wallet_does_not_hold_up_the_others(
    database_url: str, anvil: str, tmp_path: Path
) -> None:
    async with open_cluster(
        tmp_path, database_url, anvil, redis_url=REDIS_URL, workers=2, wallets=4, funded=False
    ) as cluster:
        broke, *others = cluster.wallets
        for wallet in others:
            await cluster.fund(wallet)
        stuck = await cluster.submit(20, wallets=[broke])
        flowing = await cluster.submit(20, wallets=others)

        async def others_done() -> bool:
            statuses = await cluster.statuses(flowing)
            return all(status is TxStatus.CONFIRMED for status in statuses.values())

        await eventually(others_done, timeout_s=120)
        # The broke wallet's requests wait, in order, with no nonce used on chain.
        assert all(
            status in (TxStatus.QUEUED, TxStatus.SIGNED)
            for status in (await cluster.statuses(stuck)).values()
        )
        assert await cluster.chain_nonce(broke) == 0
        await cluster.fund(broke)
        await cluster.settle(timeout_s=120)
        assert await cluster.count(TxStatus.CONFIRMED) == 80
        assert await cluster.violations() == []
