"""DCA swaps on a real Uniswap V2 (npm build files, anvil), PostgreSQL and SQLite: each run
quotes when it starts, the receipts' Swap logs match the wallet's balances, a price moved past
the slippage fails that run only (never retried), max_price skips, an ERC-20 is approved once
before the first swap."""

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from eth_abi.abi import decode
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.domain.schedules import service
from chainflow.domain.schedules.models import RunStatus, ScheduleRun, ScheduleStatus
from chainflow.domain.schedules.schemas import ScheduleCreate
from chainflow.domain.transactions import service as txs
from chainflow.domain.transactions.calldata import encode_call
from chainflow.domain.transactions.models import Transaction
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.wallets.models import Wallet
from chainflow.infra.anvil import run_anvil
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.rpc.client import RpcCallError, RpcClient
from chainflow.infra.signing.keystore import MasterKey
from chainflow.workers.engine import Engine
from chainflow.workers.schedules import schedule_pass
from tests.support.chains import ANVIL_CHAIN_ID
from tests.support.engine import EngineHarness, has_status, open_engine_harness
from tests.support.uniswap import DEPLOYER, E18, Dex, deploy_dex, swaps_in

STEP_S = 60
# Occurrences in the future of the wall clock: the engine rounds that drain a run's request
# also run their own schedule pass (at the wall clock's time), which must not take them.
# Deadlines (occurrence + deadline_s) are then in the chain's future too.
T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="session")
async def deployed() -> AsyncIterator[tuple[str, Dex]]:
    """One anvil with the DEX for the session (deployment and pools: ~0.3 s)."""
    async with run_anvil() as url, aiohttp.ClientSession() as http:
        yield url, await deploy_dex(RpcClient(http, url))


@pytest.fixture
async def dex(deployed: tuple[str, Dex]) -> AsyncIterator[Dex]:
    url, built = deployed
    async with aiohttp.ClientSession() as http:
        yield replace(built, rpc=RpcClient(http, url, timeout_s=10))


@pytest.fixture
async def harness(
    sessionmaker: async_sessionmaker[AsyncSession],
    deployed: tuple[str, Dex],
    master_key: MasterKey,
) -> AsyncIterator[EngineHarness]:
    async with open_engine_harness(sessionmaker, deployed[0], master_key) as value:
        yield value


class WithoutDebug:
    """A node without the debug namespace, as most hosted endpoints are: anvil behind it,
    debug_* refused as such nodes refuse it."""

    def __init__(self, rpc: RpcClient) -> None:
        self.rpc = rpc

    async def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        if method.startswith("debug_"):
            raise RpcCallError(rpc_code=-32601, message=f"the method {method} does not exist")
        return await self.rpc.call(method, params)

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        return await self.rpc.batch(calls)


async def _raw_in_pool(dex: Dex, wallet: Wallet) -> str:
    """The signed bytes of the wallet's one transaction in anvil's pool."""
    content = await dex.rpc.call("txpool_content", [])
    (found,) = [
        tx
        for sender, by_nonce in content["pending"].items()
        if sender.lower() == wallet.address.lower()
        for tx in by_nonce.values()
    ]
    return str(await dex.rpc.call("eth_getRawTransactionByHash", [found["hash"]]))


def _one_native_to_b(dex: Dex) -> dict[str, object]:
    """A swap of 1 native coin for B at 50 bps slippage."""
    return {
        "router": dex.router,
        "token_in": "native",
        "token_out": dex.token_b,
        "amount_in": str(E18),
        "slippage_bps": 50,
    }


async def _create(
    harness: EngineHarness, wallet: Wallet, now: datetime, action: dict[str, Any], **fields: Any
) -> uuid.UUID:
    body = ScheduleCreate.model_validate(
        {
            "wallet": str(wallet.id),
            "chain_id": ANVIL_CHAIN_ID,
            "trigger": {"interval_s": STEP_S},
            "start_at": now.isoformat(),
            "action": {"type": "dca_swap", "slippage_bps": 100, "deadline_s": 600, **action},
            **fields,
        }
    )
    async with unit_of_work(harness.sessionmaker) as session:
        row = await service.create_schedule(
            session, body, api_key_id=None, now=now, min_interval_s=1
        )
        if row.approval_tx_id is not None:
            approval = row.approval_tx_id
        else:
            return row.id
    (approved,) = await harness.run_until_final([approval])
    assert approved.status is TxStatus.CONFIRMED
    return row.id


async def _runs(harness: EngineHarness, schedule_id: uuid.UUID) -> list[ScheduleRun]:
    async with unit_of_work(harness.sessionmaker) as session:
        rows, _ = await service.list_runs(session, schedule_id, limit=100, cursor=None)
        return list(rows)


async def _step(harness: EngineHarness, dex: Dex, at: datetime) -> ScheduleRun:
    """One occurrence: the pass (finishing the last run, starting this one), its transaction
    run to a final status, then the chain clock moved on one interval."""
    await schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=at)
    run = next(r for r in await _runs(harness, _current(harness)) if r.scheduled_for == at)
    if run.transaction_id is not None:
        await harness.run_until_final([run.transaction_id])
    await dex.rpc.call("evm_increaseTime", [STEP_S])
    await dex.rpc.call("evm_mine", [])
    return run


async def _one_swap_run(harness: EngineHarness, dex: Dex) -> tuple[Wallet, uuid.UUID, ScheduleRun]:
    """A one-run native→B schedule (50 bps slippage) and its first run (its transaction queued),
    with anvil's automine off so that a test can order blocks around it (turn it back on)."""
    wallet = await harness.wallet(balance_wei=100 * E18)
    action = _one_native_to_b(dex)
    schedule_id = await _create(harness, wallet, T0, action, max_runs=1)
    await schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=T0)
    (run,) = await _runs(harness, schedule_id)
    await dex.rpc.call("evm_setAutomine", [False])
    return wallet, schedule_id, run


def _current(harness: EngineHarness) -> uuid.UUID:
    return harness.current  # type: ignore[attr-defined, no-any-return]


async def _receipt(dex: Dex, harness: EngineHarness, tx_id: uuid.UUID) -> dict[str, Any]:
    tx = await harness.get(tx_id)
    receipt: dict[str, Any] = await dex.rpc.call("eth_getTransactionReceipt", [tx.final_hash])
    return receipt


async def _schedule_txs(harness: EngineHarness, wallet: Wallet) -> int:
    async with unit_of_work(harness.sessionmaker) as session:
        query = select(func.count()).select_from(Transaction)
        return int(await session.scalar(query.where(Transaction.wallet_id == wallet.id)) or 0)


class TestSwaps:
    # The 10 runs under scripts/chaos; 4 in CI (each run is a full engine round trip).
    @pytest.mark.parametrize("count", [4, pytest.param(10, marks=pytest.mark.chaos_full)])
    async def test_native_in_runs_match_the_swap_logs_and_the_balances(
        self, harness: EngineHarness, dex: Dex, count: int
    ) -> None:
        wallet = await harness.wallet(balance_wei=100 * E18)
        now = T0
        action = {"router": dex.router, "token_in": "native", "token_out": dex.token_b}
        schedule_id = await _create(
            harness, wallet, now, action | {"amount_in": str(E18)}, max_runs=count
        )
        harness.current = schedule_id  # type: ignore[attr-defined]
        eth_before = int(await dex.rpc.call("eth_getBalance", [wallet.address, "latest"]), 16)
        runs = [
            await _step(harness, dex, now + timedelta(seconds=STEP_S * k)) for k in range(count)
        ]
        await schedule_pass(
            harness.engine, ANVIL_CHAIN_ID, now=now + timedelta(seconds=STEP_S * count)
        )
        outs, gas = 0, 0
        for run in runs:
            tx = await harness.get(run.transaction_id)  # type: ignore[arg-type]
            assert tx.status is TxStatus.CONFIRMED
            receipt = await _receipt(dex, harness, tx.id)
            (swap,) = swaps_in(receipt)
            out = max(swap[2], swap[3])
            assert run.quote_out is not None
            assert out == run.quote_out  # nothing moved the pool between quote and swap
            amount_min, path, to, _deadline = decode(
                ["uint256", "address[]", "address", "uint256"], tx.data[4:]
            )
            assert amount_min == run.quote_out * 9_900 // 10_000
            assert (to.lower(), path[-1].lower()) == (wallet.address.lower(), dex.token_b.lower())
            assert tx.gas_limit is not None
            assert tx.gas_limit > int(receipt["gasUsed"], 16)  # padded
            outs += out
            gas += int(receipt["gasUsed"], 16) * int(receipt["effectiveGasPrice"], 16)
        assert await dex.balance(dex.token_b, wallet.address) == outs
        eth_after = int(await dex.rpc.call("eth_getBalance", [wallet.address, "latest"]), 16)
        assert eth_before - eth_after == count * E18 + gas
        quotes = [run.quote_out or 0 for run in runs]
        assert quotes == sorted(quotes, reverse=True)  # each run bought at the moved price
        finished = await _runs(harness, schedule_id)
        assert [r.status for r in finished] == [RunStatus.SUCCEEDED] * count
        async with unit_of_work(harness.sessionmaker) as session:
            row = await service.get_schedule(session, schedule_id)
        assert (row.status, row.spent) == (ScheduleStatus.COMPLETED, count * E18)

    @pytest.mark.parametrize("count", [2, pytest.param(10, marks=pytest.mark.chaos_full)])
    async def test_erc20_in_is_approved_once_before_the_first_swap(
        self, harness: EngineHarness, dex: Dex, count: int
    ) -> None:
        wallet = await harness.wallet(balance_wei=10 * E18)
        await dex.fund(dex.token_a, wallet.address, (count * 10 + 30) * E18)
        now = T0
        action = {
            "router": dex.router,
            "token_in": dex.token_a,
            "token_out": dex.token_b,
            "amount_in": str(10 * E18),
        }
        schedule_id = await _create(harness, wallet, now, action, budget=str(count * 10 * E18))
        harness.current = schedule_id  # type: ignore[attr-defined]
        (allowance,) = await dex.call(
            dex.token_a, "allowance(address,address)", [wallet.address, dex.router], ["uint256"]
        )
        assert allowance == count * 10 * E18  # the budget, not unlimited
        made = [
            await _step(harness, dex, now + timedelta(seconds=STEP_S * k)) for k in range(count)
        ]
        # the budget is spent: the next occurrence would exceed it, so the schedule ends there
        # (not when the last run started: a run that fails gives its amount back)
        last = await _step(harness, dex, now + timedelta(seconds=STEP_S * count))
        assert (last.status, last.transaction_id) == (RunStatus.SKIPPED, None)
        assert (last.reason or "").startswith("budget reached")
        async with unit_of_work(harness.sessionmaker) as session:
            row = await service.get_schedule(session, schedule_id)
        assert (row.status, row.spent, row.next_run_at) == (
            ScheduleStatus.COMPLETED,
            count * 10 * E18,
            None,
        )
        outs = 0
        for run in made:
            (swap,) = swaps_in(await _receipt(dex, harness, run.transaction_id))  # type: ignore[arg-type]
            assert sum(swap[:2]) == 10 * E18
            outs += max(swap[2], swap[3])
        assert await dex.balance(dex.token_a, wallet.address) == 30 * E18
        assert await dex.balance(dex.token_b, wallet.address) == outs
        assert await _schedule_txs(harness, wallet) == 1 + count  # the approve and the swaps

    async def test_two_schedules_on_one_token_and_router_keep_both_allowances(
        self, harness: EngineHarness, dex: Dex
    ) -> None:
        """An approve sets the allowance: the second schedule's grants what both can still
        spend (audit: it granted its own only, and both stalled with runs left)."""
        wallet = await harness.wallet(balance_wei=10 * E18)
        await dex.fund(dex.token_a, wallet.address, 100 * E18)
        action = {"router": dex.router, "token_in": dex.token_a, "token_out": dex.token_b}
        first = await _create(
            harness, wallet, T0, action | {"amount_in": str(10 * E18)}, max_runs=2
        )
        second = await _create(
            harness, wallet, T0, action | {"amount_in": str(5 * E18)}, budget=str(10 * E18)
        )
        (allowance,) = await dex.call(
            dex.token_a, "allowance(address,address)", [wallet.address, dex.router], ["uint256"]
        )
        assert allowance == 20 * E18 + 10 * E18
        for k in range(2):
            at = T0 + timedelta(seconds=STEP_S * k)
            await schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=at)
            runs = [
                r for s in (first, second) for r in await _runs(harness, s) if r.scheduled_for == at
            ]
            assert [(r.status, r.reason) for r in runs] == [(RunStatus.PENDING, None)] * 2
            ids = [r.transaction_id for r in runs if r.transaction_id is not None]
            for tx in await harness.run_until_final(ids):
                assert tx.status is TxStatus.CONFIRMED
            await dex.rpc.call("evm_increaseTime", [STEP_S])
            await dex.rpc.call("evm_mine", [])
        assert await dex.balance(dex.token_a, wallet.address) == 70 * E18

    async def test_a_pending_run_of_another_schedule_that_fails_keeps_its_allowance(
        self, harness: EngineHarness, dex: Dex
    ) -> None:
        """The second schedule's approve counts the first one's pending run as still to
        spend: when that run fails unspent and is given back, the allowance has it (review:
        the first schedule skipped forever, waiting for an approve confirmed long before)."""
        wallet = await harness.wallet(balance_wei=10 * E18)
        await dex.fund(dex.token_a, wallet.address, 100 * E18)
        action = {"router": dex.router, "token_in": dex.token_a, "token_out": dex.token_b}
        first = await _create(
            harness, wallet, T0, action | {"amount_in": str(10 * E18)}, budget=str(20 * E18)
        )
        await schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=T0)
        (pending,) = await _runs(harness, first)
        assert pending.transaction_id is not None
        async with unit_of_work(harness.sessionmaker) as session:
            await txs.cancel(session, pending.transaction_id, api_key_id=None, is_admin=True)
        await _create(
            harness, wallet, T0, action | {"amount_in": str(5 * E18)}, budget=str(5 * E18)
        )
        (allowance,) = await dex.call(
            dex.token_a, "allowance(address,address)", [wallet.address, dex.router], ["uint256"]
        )
        assert allowance == 20 * E18 + 5 * E18  # the cancelled run's 10 included
        for k in (1, 2):
            at = T0 + timedelta(seconds=STEP_S * k)
            await schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=at)
            (run,) = [r for r in await _runs(harness, first) if r.scheduled_for == at]
            assert (run.status, run.reason) == (RunStatus.PENDING, None)
            assert run.transaction_id is not None
            (tx,) = await harness.run_until_final([run.transaction_id])
            assert tx.status is TxStatus.CONFIRMED
            await dex.rpc.call("evm_increaseTime", [STEP_S])
            await dex.rpc.call("evm_mine", [])

    async def test_an_allowance_short_after_the_approve_says_what_to_do(
        self, harness: EngineHarness, dex: Dex
    ) -> None:
        """Review: the skip named an approve confirmed long before as the one to wait for."""
        wallet = await harness.wallet(balance_wei=10 * E18)
        await dex.fund(dex.token_a, wallet.address, 20 * E18)
        action = {"router": dex.router, "token_in": dex.token_a, "token_out": dex.token_b}
        schedule_id = await _create(
            harness, wallet, T0, action | {"amount_in": str(10 * E18)}, max_runs=2
        )
        revoke = await harness.submit(
            wallet, to=dex.token_a, function="approve(address,uint256)", args=[dex.router, "0"]
        )
        (revoked,) = await harness.run_until_final([revoke])
        assert revoked.status is TxStatus.CONFIRMED
        await schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=T0)
        (run,) = await _runs(harness, schedule_id)
        assert run.status is RunStatus.SKIPPED
        assert run.reason == (
            f"the router's allowance (0) is below amount_in ({10 * E18}): approve the router "
            "for at least amount_in from the wallet (approve sets the allowance, it does not "
            "add to it), or cancel this schedule"
        )

    async def test_a_fee_on_transfer_token_in_swaps_with_the_supporting_variant(
        self, harness: EngineHarness, dex: Dex
    ) -> None:
        wallet = await harness.wallet(balance_wei=10 * E18)
        await dex.fund(dex.deflating, wallet.address, 50 * E18)  # 1 % burnt on the way
        now = T0
        action = {
            "router": dex.router,
            "token_in": dex.deflating,
            "token_out": dex.token_b,
            "amount_in": str(10 * E18),
            "slippage_bps": 300,  # the 1 % fee on the way in, twice (wallet → pair), and more
            "fee_on_transfer": True,
        }
        schedule_id = await _create(harness, wallet, now, action, max_runs=1)
        harness.current = schedule_id  # type: ignore[attr-defined]
        run = await _step(harness, dex, now)
        tx = await harness.get(run.transaction_id)  # type: ignore[arg-type]
        assert tx.status is TxStatus.CONFIRMED
        assert (
            tx.data[:4]
            == encode_call(
                "swapExactTokensForTokensSupportingFeeOnTransferTokens(uint256,uint256,address[],address,uint256)",
                ["0", "0", [], wallet.address, "0"],
            )[:4]
        )
        (swap,) = swaps_in(await _receipt(dex, harness, tx.id))
        received = max(swap[2], swap[3])
        assert await dex.balance(dex.token_b, wallet.address) == received
        assert run.quote_out is not None
        assert run.quote_out * 9_700 // 10_000 <= received < run.quote_out  # the fee cost some


class TestGuards:
    async def test_a_price_moved_past_the_slippage_fails_that_run_only(
        self, harness: EngineHarness, dex: Dex
    ) -> None:
        wallet = await harness.wallet(balance_wei=100 * E18)
        now = T0
        action = _one_native_to_b(dex)
        schedule_id = await _create(harness, wallet, now, action)
        harness.current = schedule_id  # type: ignore[attr-defined]
        await schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=now)
        (first,) = await _runs(harness, schedule_id)
        # Someone buys the same token between the run's quote and its signing: > 0.5 % worse.
        path = [dex.weth, dex.token_b]
        await dex.send(
            dex.router,
            "swapExactETHForTokens(uint256,address[],address,uint256)",
            ["0", path, DEPLOYER, str(2**40)],
            value=5 * E18,
        )
        (failed,) = await harness.run_until_final([first.transaction_id])  # type: ignore[list-item]
        assert failed.status is TxStatus.FAILED
        assert failed.nonce is None  # refused at the estimate: no nonce, no gas
        second = await _step(harness, dex, now + timedelta(seconds=STEP_S))
        first, second = await _runs(harness, schedule_id)
        assert first.status is RunStatus.FAILED
        assert "INSUFFICIENT_OUTPUT_AMOUNT" in (first.reason or "")
        assert second.quote_out is not None
        assert first.quote_out is not None
        assert second.quote_out < first.quote_out  # a fresh quote at the moved price
        await schedule_pass(
            harness.engine,
            ANVIL_CHAIN_ID,
            now=now + timedelta(seconds=STEP_S * 2) - timedelta(seconds=1),
        )
        first, second = await _runs(harness, schedule_id)
        assert second.status is RunStatus.SUCCEEDED
        assert await _schedule_txs(harness, wallet) == 2  # never retried with the stale quote
        async with unit_of_work(harness.sessionmaker) as session:
            row = await service.get_schedule(session, schedule_id)
        assert (row.runs, row.spent) == (2, E18)  # the failed swap spent nothing

    async def test_a_swap_that_reverts_on_chain_records_the_routers_reason(
        self, harness: EngineHarness, dex: Dex
    ) -> None:
        """The swap passes its estimate and is sent; another swap, mined before it in the same
        block, moves the price past the slippage: the receipt has status 0. The request and
        the run record the router's reason (replayed by the tracker), not only "reverted"."""
        _, schedule_id, run = await _one_swap_run(harness, dex)
        assert run.transaction_id is not None
        try:
            await harness.run_until([run.transaction_id], has_status(TxStatus.SUBMITTED))
            front = encode_call(
                "swapExactETHForTokens(uint256,address[],address,uint256)",
                ["0", [dex.weth, dex.token_b], DEPLOYER, str(2**40)],
            )
            await dex.rpc.call(
                "eth_sendTransaction",
                [
                    {
                        "from": DEPLOYER,
                        "to": dex.router,
                        "data": "0x" + front.hex(),
                        "value": hex(5 * E18),
                        "gas": hex(300_000),
                        "maxPriorityFeePerGas": hex(500 * 10**9),  # mined first in the block
                        "maxFeePerGas": hex(1_000 * 10**9),
                    }
                ],
            )
            await dex.rpc.call("evm_mine", [])
        finally:
            await dex.rpc.call("evm_setAutomine", [True])
        (tx,) = await harness.run_until_final([run.transaction_id])
        assert (tx.status, tx.receipt_status, tx.error_code) == (TxStatus.REVERTED, 0, "reverted")
        assert tx.error_message == (
            "the transaction reverted on chain: UniswapV2Router: INSUFFICIENT_OUTPUT_AMOUNT"
        )
        await schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=T0 + timedelta(seconds=1))
        (run,) = await _runs(harness, schedule_id)
        assert run.status is RunStatus.FAILED
        assert "UniswapV2Router: INSUFFICIENT_OUTPUT_AMOUNT" in (run.reason or "")

    async def test_without_a_debug_namespace_the_reason_comes_from_a_replay(
        self, harness: EngineHarness, dex: Dex
    ) -> None:
        """A node that refuses debug_traceTransaction (most hosted endpoints): the tracker
        replays the call at the parent block. The pool is moved in the block before the
        swap's, so the replay reverts as the swap did."""
        engine = Engine.start(
            replace(harness.engine.ports, rpc={ANVIL_CHAIN_ID: WithoutDebug(harness.rpc)})
        )
        harness = replace(harness, engine=engine)
        wallet, _, run = await _one_swap_run(harness, dex)
        assert run.transaction_id is not None
        try:
            (sent,) = await harness.run_until([run.transaction_id], has_status(TxStatus.SUBMITTED))
            assert sent.final_hash is None
            raw = await _raw_in_pool(dex, wallet)
            await dex.rpc.call("anvil_dropAllTransactions", [])
            await dex.rpc.call("evm_setAutomine", [True])
            await dex.send(  # mined alone, in the block before the swap's
                dex.router,
                "swapExactETHForTokens(uint256,address[],address,uint256)",
                ["0", [dex.weth, dex.token_b], DEPLOYER, str(2**40)],
                value=5 * E18,
            )
            await dex.rpc.call("eth_sendRawTransaction", [raw])
        finally:
            await dex.rpc.call("evm_setAutomine", [True])
        (tx,) = await harness.run_until_final([run.transaction_id])
        assert (tx.status, tx.error_code) == (TxStatus.REVERTED, "reverted")
        assert tx.error_message == (
            "the transaction reverted on chain: UniswapV2Router: INSUFFICIENT_OUTPUT_AMOUNT"
        )

    async def test_max_price_skips_with_a_reason(self, harness: EngineHarness, dex: Dex) -> None:
        wallet = await harness.wallet(balance_wei=10 * E18)
        now = T0
        action = {
            "router": dex.router,
            "token_in": "native",
            "token_out": dex.token_b,
            "amount_in": str(E18),
            "max_price": "0.0001",  # 1 ETH buys ~2,900 B: a price of ~0.00034 ETH per B
        }
        schedule_id = await _create(harness, wallet, now, action)
        await schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=now)
        (run,) = await _runs(harness, schedule_id)
        assert run.status is RunStatus.SKIPPED
        assert "above max_price 0.0001" in (run.reason or "")
        assert run.transaction_id is None
        assert await _schedule_txs(harness, wallet) == 0
