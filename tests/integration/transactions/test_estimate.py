"""A request whose gas estimate reverts while an earlier request of its lane is not mined yet
(drain/estimate.py): it stays queued until that request is mined, and only a revert with
nothing of its lane ahead of it fails it (`estimate_reverted`, no nonce taken).

The dependency is the plainest one a user submits back to back: WETH9's `deposit()`, then a
`transfer` of the wrapped ether, which reverts (balance too low) until the deposit has run.
anvil estimates on its pending state (the pool's transactions included) when no block is
named, so there a transfer behind a deposit the node holds estimates well, and a dependent
request waits only behind a deposit in the same estimate batch, or signed and not sent yet;
geth, which estimates on `latest` (go-ethereum #24363), also makes it wait behind a deposit
that is sent and not mined. A transfer of more than was deposited reverts on any state: it
waits while the deposit is unmined, then fails.
"""

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from eth_abi.abi import decode, encode

from chainflow.cli.dex import artifact, check_build_files
from chainflow.core.types import TxId
from chainflow.domain.transactions import service as txs
from chainflow.domain.transactions.models import Transaction
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.wallets.models import Wallet
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.rpc.client import RpcClient
from chainflow.workers.drain import drain_lane
from chainflow.workers.main import run_round
from tests.support.chains import ANVIL_CHAIN_ID
from tests.support.chaos import (
    assert_lane_settled,
    chain_config,
    describe,
    lane_next_nonce,
    mining_stopped,
    receipt_of,
    resume_mining,
    sign_without_sending,
)
from tests.support.engine import EngineHarness, deploy, has_status
from tests.support.polling import eventually
from tests.support.uniswap import ROOT

ROUNDS_WATCHED = 4  # rounds a waiting request is watched staying queued
BALANCE_OF = "0x70a08231"  # balanceOf(address)


@pytest.fixture
async def weth(harness: EngineHarness) -> str:
    """WETH9 (Uniswap V2 periphery's build file, installed by scripts/bootstrap) on anvil."""
    built = artifact(check_build_files(ROOT), "v2-periphery", "WETH9")
    return await deploy(harness.rpc, "0x" + built["bytecode"])


async def wrapped_of(rpc: RpcClient, weth: str, holder: str) -> int:
    data = BALANCE_OF + encode(["address"], [holder]).hex()
    answer = await rpc.call("eth_call", [{"to": weth, "data": data}, "latest"])
    (balance,) = decode(["uint256"], bytes.fromhex(answer[2:]))
    return int(balance)


async def deposit(harness: EngineHarness, wallet: Wallet, weth: str, wei: int) -> TxId:
    return await harness.submit(wallet, to=weth, value=str(wei), function="deposit()", args=[])


async def transfer(harness: EngineHarness, wallet: Wallet, weth: str, to: str, wei: int) -> TxId:
    return await harness.submit(
        wallet, to=weth, function="transfer(address,uint256)", args=[to, str(wei)]
    )


def ends(rows: list[Transaction]) -> list[tuple[TxStatus, int | None]]:
    return [(tx.status, tx.nonce) for tx in rows]


async def assert_stays_queued(
    harness: EngineHarness,
    tx_ids: list[TxId],
    *,
    each: Callable[[], Awaitable[object]] | None = None,
) -> None:
    """Round after round (`each`, default a whole engine round), these requests stay queued:
    no nonce, no error, no attempt."""
    for _ in range(ROUNDS_WATCHED):
        await (each or (lambda: run_round(harness.engine, ANVIL_CHAIN_ID)))()
        for tx in [await harness.get(tx_id) for tx_id in tx_ids]:
            assert (tx.status, tx.nonce, tx.error_code, tx.attempts) == (
                TxStatus.QUEUED,
                None,
                None,
                [],
            ), describe(tx)


async def waiting_behind_a_sent_deposit(
    harness: EngineHarness, wallet: Wallet, weth: str, *, deposited: int, transferred: int
) -> tuple[Transaction, TxId]:
    """With mining stopped: a deposit sent and unmined, and a transfer of more than it (it
    reverts on the pending state too) seen staying queued behind it."""
    first = await deposit(harness, wallet, weth, deposited)
    (sent,) = await harness.run_until([first], has_status(TxStatus.SUBMITTED))
    assert transferred > deposited
    waiting = await transfer(harness, wallet, weth, "0x" + secrets.token_hex(20), transferred)
    await assert_stays_queued(harness, [waiting])
    return sent, waiting


class TestRevertBehindAnUnminedRequest:
    async def test_a_transfer_estimated_with_its_deposit_in_one_step_waits_for_it(
        self, harness: EngineHarness, weth: str
    ) -> None:
        wallet = await harness.wallet()
        recipient = "0x" + secrets.token_hex(20)
        ids = [
            await deposit(harness, wallet, weth, 1_000),
            await transfer(harness, wallet, weth, recipient, 600),
        ]
        rows = await harness.run_until_final(ids)
        assert ends(rows) == [(TxStatus.CONFIRMED, 0), (TxStatus.CONFIRMED, 1)], [
            describe(tx) for tx in rows
        ]
        assert await wrapped_of(harness.rpc, weth, recipient) == 600
        assert await wrapped_of(harness.rpc, weth, wallet.address) == 400
        await assert_lane_settled(harness, wallet)

    async def test_it_stays_queued_behind_a_signed_deposit_and_nothing_overtakes_it(
        self, harness: EngineHarness, weth: str
    ) -> None:
        wallet = await harness.wallet()
        recipient = "0x" + secrets.token_hex(20)
        first = await deposit(harness, wallet, weth, 1_000)
        # Signed at nonce 0 and stored, not sent: only the tracker's re-send brings it to the
        # node, and drains alone never send it.
        (signed,) = await sign_without_sending(harness, wallet)
        assert signed.tx_id == first
        waiting = [
            await transfer(harness, wallet, weth, recipient, 1_000),
            await harness.submit(wallet, value="1"),  # later: must not overtake it
        ]
        chain = await chain_config(harness)
        await assert_stays_queued(
            harness, waiting, each=lambda: drain_lane(harness.engine, chain, wallet.id)
        )
        rows = await harness.run_until_final([first, *waiting])
        assert ends(rows) == [(TxStatus.CONFIRMED, n) for n in range(3)], [
            describe(tx) for tx in rows
        ]
        assert await wrapped_of(harness.rpc, weth, recipient) == 1_000
        await assert_lane_settled(harness, wallet)

    async def test_a_waiting_lane_is_estimated_again_only_once_its_mined_count_moves(
        self, harness: EngineHarness, weth: str
    ) -> None:
        wallet = await harness.wallet()
        first = await deposit(harness, wallet, weth, 1_000)
        await sign_without_sending(harness, wallet)
        waiting = [
            await transfer(harness, wallet, weth, "0x" + secrets.token_hex(20), 1_000),
            await harness.submit(wallet, value="1"),
        ]
        chain = await chain_config(harness)
        rpc = harness.engine.rpc(ANVIL_CHAIN_ID)
        batch = rpc.batch
        estimated: list[str] = []

        async def counting(calls: Any) -> Any:
            estimated.extend(name for name, _ in calls if name == "eth_estimateGas")
            return await batch(calls)

        rpc.batch = counting  # type: ignore[method-assign]
        try:
            await assert_stays_queued(
                harness, waiting, each=lambda: drain_lane(harness.engine, chain, wallet.id)
            )
        finally:
            del rpc.batch
        # The first drain estimates the transfer and the request behind it; the next ones,
        # with nothing mined since, estimate nothing (each used to estimate both again).
        assert len(estimated) == 2, estimated
        rows = await harness.run_until_final([first, *waiting])
        assert ends(rows) == [(TxStatus.CONFIRMED, n) for n in range(3)], [
            describe(tx) for tx in rows
        ]

    async def test_a_request_that_waited_on_one_cancelled_unsigned_is_judged_again_at_once(
        self, harness: EngineHarness, weth: str
    ) -> None:
        wallet = await harness.wallet()
        first = await deposit(harness, wallet, weth, 1_000)
        behind = await transfer(harness, wallet, weth, "0x" + secrets.token_hex(20), 600)
        chain = await chain_config(harness)
        rpc = harness.engine.rpc(ANVIL_CHAIN_ID)
        batch = rpc.batch
        cancelled = False

        async def cancel_after_the_estimate(calls: Any) -> Any:
            nonlocal cancelled
            answers = await batch(calls)
            if not cancelled and calls and calls[0][0] == "eth_estimateGas":
                cancelled = True  # the deposit leaves the queue unsigned: no nonce moves
                async with unit_of_work(harness.sessionmaker) as session:
                    await txs.cancel(session, first, api_key_id=None, is_admin=True)
            return answers

        rpc.batch = cancel_after_the_estimate  # type: ignore[method-assign]
        try:
            assert await drain_lane(harness.engine, chain, wallet.id) == 0
        finally:
            del rpc.batch
        assert cancelled
        assert (await harness.get(behind)).status is TxStatus.QUEUED  # it waited on the deposit
        # Nothing of the lane is ahead of it now, and no count moved: judged again, it fails.
        await drain_lane(harness.engine, chain, wallet.id)
        tx = await harness.get(behind)
        assert (tx.status, tx.nonce, tx.error_code) == (
            TxStatus.FAILED,
            None,
            "estimate_reverted",
        ), describe(tx)
        assert await lane_next_nonce(harness, wallet) == 0
        await assert_lane_settled(harness, wallet)

    async def test_a_revert_for_good_fails_once_the_deposit_is_mined(
        self, harness: EngineHarness, weth: str
    ) -> None:
        wallet = await harness.wallet()
        rpc = harness.rpc
        async with mining_stopped(rpc):
            sent, too_much = await waiting_behind_a_sent_deposit(
                harness, wallet, weth, deposited=1, transferred=2
            )
            await resume_mining(rpc)
            await eventually(lambda: receipt_of(rpc, sent.attempts[0].hash))
            # The next round reads the deposit mined: nothing is ahead, the revert is final.
            await run_round(harness.engine, ANVIL_CHAIN_ID)
            tx = await harness.get(too_much)
        assert (tx.status, tx.nonce, tx.error_code, tx.attempts) == (
            TxStatus.FAILED,
            None,
            "estimate_reverted",
            [],
        ), describe(tx)
        (done,) = await harness.run_until_final([sent.id])
        assert (done.status, done.nonce) == (TxStatus.CONFIRMED, 0)
        assert await lane_next_nonce(harness, wallet) == 1
        await assert_lane_settled(harness, wallet)

    async def test_the_waiting_request_is_cancelled_at_once(
        self, harness: EngineHarness, weth: str
    ) -> None:
        wallet = await harness.wallet()
        rpc = harness.rpc
        async with mining_stopped(rpc):
            sent, waiting = await waiting_behind_a_sent_deposit(
                harness, wallet, weth, deposited=1_000, transferred=2_000
            )
            async with unit_of_work(harness.sessionmaker) as session:
                cancelled = await txs.cancel(session, waiting, api_key_id=None, is_admin=True)
            assert cancelled.status is TxStatus.CANCELLED
            await resume_mining(rpc)
            rows = await harness.run_until_final([sent.id, waiting])
        assert ends(rows) == [(TxStatus.CONFIRMED, 0), (TxStatus.CANCELLED, None)], [
            describe(tx) for tx in rows
        ]
        await assert_lane_settled(harness, wallet)
