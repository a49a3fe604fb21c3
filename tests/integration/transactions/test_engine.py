"""The engine end to end on a real anvil, on PostgreSQL and SQLite."""

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from chainflow.core.clock import utcnow
from chainflow.core.types import WalletId
from chainflow.domain.chains import service as chains
from chainflow.domain.transactions import repository
from chainflow.domain.transactions.config import ChainConfig
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.wallets import service as wallets
from chainflow.domain.wallets.models import Wallet, WalletChain, WalletStatus
from chainflow.infra.db.uow import unit_of_work
from chainflow.workers.drain import drain_lane, drain_lanes
from chainflow.workers.engine import Engine
from chainflow.workers.main import run_round
from tests.support.chains import ANVIL_CHAIN_ID
from tests.support.chaos import mining_stopped
from tests.support.engine import (
    ONCE_ONLY_INIT_CODE,
    EngineHarness,
    deploy,
    has_status,
)


class TestHappyPath:
    async def test_transfers_confirm_once_with_contiguous_nonces(
        self, harness: EngineHarness
    ) -> None:
        wallet = await harness.wallet()
        ids = [await harness.submit(wallet, value=str(1000 + i)) for i in range(5)]
        rows = await harness.run_until(ids, has_status(TxStatus.CONFIRMED))
        assert sorted(-1 if tx.nonce is None else tx.nonce for tx in rows) == [0, 1, 2, 3, 4]
        assert await harness.chain_nonce(wallet) == 5
        for tx in rows:
            assert len(tx.attempts) == 1
            assert tx.final_hash == tx.attempts[0].hash
            receipt = await harness.rpc.call("eth_getTransactionReceipt", [tx.final_hash])
            assert int(receipt["status"], 16) == 1
            events = [(e.from_status, e.to_status) for e in tx.events]
            assert events == [
                (None, "queued"),
                ("queued", "signed"),
                ("signed", "submitted"),
                ("submitted", "mined"),
                ("mined", "confirmed"),
            ]


class TestExpiry:
    async def test_valid_until_passed_before_signing_expires_without_a_nonce(
        self, harness: EngineHarness
    ) -> None:
        wallet = await harness.wallet()
        past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
        expired = await harness.submit(wallet, value="1", valid_until=past)
        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        kept = await harness.submit(wallet, value="2", valid_until=later)
        expired_tx, kept_tx = await harness.run_until_final([expired, kept])
        assert (expired_tx.status, expired_tx.nonce) == (TxStatus.EXPIRED, None)
        assert (kept_tx.status, kept_tx.nonce) == (TxStatus.CONFIRMED, 0)


class TestRevertedOnChain:
    async def test_status_zero_receipt_at_depth_is_reverted_and_keeps_its_nonce(
        self, harness: EngineHarness
    ) -> None:
        contract = await deploy(harness.rpc, ONCE_ONLY_INIT_CODE)
        wallet = await harness.wallet()
        first = await harness.submit(wallet, to=contract, data="0x")
        second = await harness.submit(wallet, to=contract, data="0x")
        ok, reverted = await harness.run_until_final([first, second])
        assert (ok.status, ok.receipt_status, ok.nonce) == (TxStatus.CONFIRMED, 1, 0)
        assert (reverted.status, reverted.receipt_status, reverted.nonce) == (
            TxStatus.REVERTED,
            0,
            1,
        )
        assert reverted.error_code == "reverted"
        # the node's trace of it: a bare revert(0, 0), no reason string
        assert reverted.error_message == "the transaction reverted on chain: execution reverted"
        assert await harness.chain_nonce(wallet) == 2


class TestPausedWallet:
    async def test_requests_of_a_paused_wallet_wait_then_go_once_it_is_active(
        self, harness: EngineHarness
    ) -> None:
        wallet = await harness.wallet()
        tx_id = await harness.submit(wallet, value="1")
        await _set_status(harness, wallet, WalletStatus.PAUSED)
        async with unit_of_work(harness.sessionmaker) as session:
            # not offered to a drain at all: it would ask the node for counts every round
            offered = await repository.lanes_with_queued(
                session, ANVIL_CHAIN_ID, owner=harness.engine.ports.owner, now=utcnow()
            )
            assert wallet.id not in offered
        await run_round(harness.engine, ANVIL_CHAIN_ID)
        assert (await harness.get(tx_id)).status is TxStatus.QUEUED
        await _set_status(harness, wallet, WalletStatus.ACTIVE)
        (tx,) = await harness.run_until([tx_id], has_status(TxStatus.CONFIRMED))
        assert tx.nonce == 0


async def _set_status(harness: EngineHarness, wallet: Wallet, status: WalletStatus) -> None:
    async with unit_of_work(harness.sessionmaker) as session:
        row = await wallets.get_wallet(session, wallet.id)
        await wallets.update_wallet(session, row, changes={"status": status}, is_admin=False)


class TestLaneDrain:
    async def test_a_lane_another_live_process_drains_is_offered_only_once_its_lease_ends(
        self, harness: EngineHarness
    ) -> None:
        wallet = await harness.wallet()
        await harness.submit(wallet, value="1")
        now = utcnow()

        async def offered(at: datetime) -> dict[WalletId, int]:
            async with unit_of_work(harness.sessionmaker) as session:
                return await repository.lanes_with_queued(
                    session, ANVIL_CHAIN_ID, owner=harness.engine.ports.owner, now=at
                )

        assert (await offered(now))[wallet.id] == 1
        async with unit_of_work(harness.sessionmaker) as session:
            lane = await session.get(WalletChain, (wallet.id, ANVIL_CHAIN_ID))
            assert lane is not None
            lane.lease_owner, lane.lease_expires_at = "another-worker", now + timedelta(seconds=5)
        assert wallet.id not in await offered(now)
        # Judged on the lease clock (the server's on PostgreSQL), not on `at`: one that ran out
        async with unit_of_work(harness.sessionmaker) as session:
            lane = await session.get(WalletChain, (wallet.id, ANVIL_CHAIN_ID))
            assert lane is not None
            lane.lease_expires_at = now - timedelta(seconds=1)
        assert (await offered(now))[wallet.id] == 1

    async def test_a_lane_already_draining_in_this_process_is_skipped(
        self, harness: EngineHarness
    ) -> None:
        wallet = await harness.wallet()
        ids = [await harness.submit(wallet, value=str(i + 1)) for i in range(3)]
        async with unit_of_work(harness.sessionmaker) as session:
            chain = ChainConfig.of(await chains.get_chain(session, ANVIL_CHAIN_ID))
        both = await asyncio.gather(
            drain_lane(harness.engine, chain, wallet.id),
            drain_lane(harness.engine, chain, wallet.id),
        )
        assert sorted(both) == [0, 3]
        rows = await harness.run_until(ids, has_status(TxStatus.CONFIRMED))
        assert sorted(tx.nonce or 0 for tx in rows) == [0, 1, 2]

    async def test_one_drain_signs_every_lane_and_sends_each_in_nonce_order(
        self, harness: EngineHarness
    ) -> None:
        wallets = [await harness.wallet() for _ in range(3)]
        ids = {w.id: [await harness.submit(w, value=str(i + 1)) for i in range(4)] for w in wallets}
        async with unit_of_work(harness.sessionmaker) as session:
            chain = ChainConfig.of(await chains.get_chain(session, ANVIL_CHAIN_ID))
        signed = await drain_lanes(harness.engine, chain, [w.id for w in reversed(wallets)])
        assert signed == 12
        for wallet in wallets:
            rows = await harness.run_until(ids[wallet.id], has_status(TxStatus.CONFIRMED))
            assert [tx.nonce for tx in rows] == [0, 1, 2, 3]  # in submission order
            assert await harness.chain_nonce(wallet) == 4

    async def test_a_lane_holds_at_most_its_limit_above_the_mined_count(
        self, harness: EngineHarness
    ) -> None:
        ports = harness.engine.ports
        limited = replace(ports, config=replace(ports.config, max_in_flight_per_lane=3))
        engine = harness.engine = replace(harness.engine, ports=limited)
        wallet = await harness.wallet()
        ids = [await harness.submit(wallet, value=str(i + 1)) for i in range(7)]
        async with unit_of_work(harness.sessionmaker) as session:
            chain = ChainConfig.of(await chains.get_chain(session, ANVIL_CHAIN_ID))
        async with mining_stopped(harness.rpc):
            assert await drain_lane(engine, chain, wallet.id) == 3
            assert await drain_lane(engine, chain, wallet.id) == 0  # three sent, none mined
            await harness.rpc.call("evm_mine")
            # The block reopens the window before any tracking round has recorded it.
            assert await drain_lane(engine, chain, wallet.id) == 3
            assert await drain_lane(engine, chain, wallet.id) == 0
        rows = await harness.run_until(ids, has_status(TxStatus.CONFIRMED))
        assert sorted(tx.nonce or 0 for tx in rows) == list(range(7))
        assert await harness.chain_nonce(wallet) == 7

    async def test_a_drain_goes_on_in_steps_of_a_window_while_the_chain_mines_at_once(
        self, harness: EngineHarness
    ) -> None:
        """A lane that signed a full window, all of it mined before the next step signs,
        signs the next window in the same drain (docs/performance.md item 37); each step's
        nonces follow the last, and each request moves signed → submitted in order."""
        engine = _windows_of_3(harness)
        wallet = await harness.wallet()
        ids = [await harness.submit(wallet, value=str(i + 1)) for i in range(8)]
        chain = await _anvil_chain(harness)
        assert await drain_lane(engine, chain, wallet.id) == 8  # windows of 3, 3 and 2
        rows = await harness.run_until(ids, has_status(TxStatus.CONFIRMED))
        assert [tx.nonce for tx in rows] == list(range(8))  # in submission order
        assert await harness.chain_nonce(wallet) == 8
        for tx in rows:
            assert len(tx.attempts) == 1
            events = [(e.from_status, e.to_status) for e in tx.events][:3]
            assert events == [(None, "queued"), ("queued", "signed"), ("signed", "submitted")]

    async def test_a_drain_of_several_lanes_takes_one_step(self, harness: EngineHarness) -> None:
        """Deep lanes drained together sign a window each, and the round ends: 32 such
        lanes in steps kept the tracker behind (docs/performance.md item 37)."""
        engine = _windows_of_3(harness)
        wallets = [await harness.wallet() for _ in range(2)]
        ids = [await harness.submit(w, value=str(i + 1)) for i in range(5) for w in wallets]
        chain = await _anvil_chain(harness)
        assert await drain_lanes(engine, chain, [w.id for w in wallets]) == 6
        await harness.run_until(ids, has_status(TxStatus.CONFIRMED))

    async def test_a_step_signs_nothing_while_the_last_window_is_unmined(
        self, harness: EngineHarness
    ) -> None:
        """The next step is planned as if the chain mined the last one, but signs on the
        counts read once the node has answered: unmined, its window stays shut."""
        engine = _windows_of_3(harness)
        wallet = await harness.wallet()
        ids = [await harness.submit(wallet, value=str(i + 1)) for i in range(7)]
        chain = await _anvil_chain(harness)
        async with mining_stopped(harness.rpc):
            assert await drain_lane(engine, chain, wallet.id) == 3
            assert await drain_lane(engine, chain, wallet.id) == 0
            await harness.rpc.call("evm_mine")
            assert await drain_lane(engine, chain, wallet.id) == 3
        rows = await harness.run_until(ids, has_status(TxStatus.CONFIRMED))
        assert [tx.nonce for tx in rows] == list(range(7))
        assert await harness.chain_nonce(wallet) == 7


def _windows_of_3(harness: EngineHarness) -> Engine:
    """The harness's engine with lanes of 3 in flight and windows of 3 (its engine from now)."""
    ports = harness.engine.ports
    config = replace(ports.config, max_in_flight_per_lane=3, batch_size=3)
    engine = harness.engine = replace(harness.engine, ports=replace(ports, config=config))
    return engine


async def _anvil_chain(harness: EngineHarness) -> ChainConfig:
    async with unit_of_work(harness.sessionmaker) as session:
        return ChainConfig.of(await chains.get_chain(session, ANVIL_CHAIN_ID))
