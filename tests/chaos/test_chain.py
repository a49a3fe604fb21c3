"""Chain-side faults under load, against real worker processes: dropped transactions, mining
stopped, base-fee spikes above the fee cap, shallow reorgs, the key used by an outside sender,
a wallet without funds, a request whose own fee cap cannot pay the base fee. Every request
ends terminal, executed at most once, none above a cap, and a stuck wallet or request does not
hold up the others."""

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from eth_account import Account
from sqlalchemy.orm import selectinload

from chainflow.domain.transactions.models import AttemptKind, Transaction
from chainflow.domain.transactions.state import TxStatus
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.rpc.client import RpcCallError, RpcClient
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
            await asyncio.sleep(0.1)  # block time: the chain's pace the service sees, not a wait
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
        await cluster.assert_settled(80, timeout_s=120)


# --- a request whose own fee cap cannot pay the base fee (issue 14) ---------------------------

PRICED_OUT = "fee_cap_below_base_fee"


@contextlib.asynccontextmanager
async def base_fee_held_at(rpc: RpcClient, base_fee_wei: int) -> AsyncIterator[None]:
    """A congested chain: every block's base fee set back to `base_fee_wei`, so that the
    EIP-1559 fall after each block never brings it down for long."""
    stop = asyncio.Event()

    async def hold() -> None:
        while not stop.is_set():
            await rpc.call("anvil_setNextBlockBaseFeePerGas", [hex(base_fee_wei)])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.05)  # about a block time

    await rpc.call("anvil_setNextBlockBaseFeePerGas", [hex(base_fee_wei)])
    await rpc.call("evm_mine")
    task = asyncio.create_task(hold())
    try:
        yield
    finally:
        stop.set()
        await task


async def cancel_over_api(cluster: Cluster, tx_id: str) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {cluster.token}"}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.post(f"{cluster.api_url}/v1/transactions/{tx_id}/cancel") as response,
    ):
        assert response.status == 200, await response.text()
        body: dict[str, object] = await response.json()
        return body


async def load_request(cluster: Cluster, tx_id: str) -> Transaction:
    async with unit_of_work(cluster.sessionmaker) as session:
        tx = await session.get(
            Transaction, uuid.UUID(tx_id), options=[selectinload(Transaction.attempts)]
        )
        assert tx is not None
        return tx


def in_s(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def test_requests_capped_below_the_base_fee_hold_up_no_one(
    database_url: str, anvil: str, tmp_path: Path
) -> None:
    """Never signed: one expires at its valid_until with the reason, one is cancelled over
    the API while it waits; every other request of their wallet and of the others confirms."""
    async with open_cluster(
        tmp_path, database_url, anvil, redis_url=REDIS_URL, workers=2, wallets=3
    ) as cluster:
        capped_wallet = cluster.wallets[0]
        async with base_fee_held_at(cluster.rpc, 10 * GWEI):
            (expiring,) = await cluster.submit(
                1, wallets=[capped_wallet], max_fee_per_gas="1", valid_until=in_s(3)
            )
            (waiting,) = await cluster.submit(1, wallets=[capped_wallet], max_fee_per_gas="2")
            load = asyncio.create_task(cluster.submit(20))
            cancelled = await cancel_over_api(cluster, waiting)
            flowing = await load
            await cluster.settle(timeout_s=120)
        statuses = await cluster.statuses(flowing)
        assert set(statuses.values()) == {TxStatus.CONFIRMED}, statuses
        assert (cancelled["status"], cancelled["nonce"]) == ("cancelled", None)
        for tx_id, status in ((expiring, TxStatus.EXPIRED), (waiting, TxStatus.CANCELLED)):
            tx = await load_request(cluster, tx_id)
            assert (tx.status, tx.nonce, tx.attempts) == (status, None, [])
        assert (await load_request(cluster, expiring)).error_code == PRICED_OUT
        assert await cluster.chain_nonce(capped_wallet) == 20
        assert await cluster.violations() == []


async def test_a_signed_request_priced_out_by_a_spike_is_cancelled_and_holds_up_no_one(
    database_url: str, anvil: str, tmp_path: Path
) -> None:
    """Signed at its cap of 3 gwei, then the base fee jumps to 30 gwei and stays there: after
    CHAINFLOW_FEE_CAP_WAIT_S a cancel above its cap takes its nonce, and every other request
    of its wallet and of the others confirms."""
    async with open_cluster(
        tmp_path,
        database_url,
        anvil,
        redis_url=REDIS_URL,
        workers=2,
        wallets=3,
        fee_cap_wait_s="2",
        stuck_after_s="1",
        resend_after_s="0.5",
    ) as cluster:
        capped_wallet = cluster.wallets[0]
        await cluster.rpc.call("evm_setAutomine", [False])
        (capped,) = await cluster.submit(1, wallets=[capped_wallet], max_fee_per_gas=str(3 * GWEI))
        load = asyncio.create_task(cluster.submit(20))

        async def sent() -> bool:
            return (await cluster.statuses([capped]))[capped] is TxStatus.SUBMITTED

        await eventually(sent, timeout_s=30)
        async with base_fee_held_at(cluster.rpc, 30 * GWEI):  # anvil drops what cannot pay
            await cluster.rpc.call("evm_setAutomine", [True])
            flowing = await load
            await cluster.settle(timeout_s=120)
        statuses = await cluster.statuses(flowing)
        assert set(statuses.values()) == {TxStatus.CONFIRMED}, statuses
        tx = await load_request(cluster, capped)
        assert (tx.status, tx.error_code) == (TxStatus.CANCELLED, PRICED_OUT)
        (mined,) = [a for a in tx.attempts if a.hash == tx.final_hash]
        assert mined.kind is AttemptKind.CANCEL
        assert (mined.max_fee_per_gas_wei or 0) > 3 * GWEI  # above the request's own cap
        assert await cluster.chain_nonce(capped_wallet) == 21
        assert await cluster.violations() == []
