"""The engine under failure (issue #3): anvil drops, stalls, re-prices and re-orders the chain.

Each test ends by reading the chain (`assert_lane_settled`): every request is terminal, the
wallet's mined nonces are exactly 0..n-1, and no request executed twice.
"""

import asyncio
import dataclasses
import itertools
from collections.abc import Callable
from datetime import timedelta

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.core.clock import utcnow
from chainflow.domain.transactions import repository
from chainflow.domain.transactions import service as txs
from chainflow.domain.transactions.models import AttemptKind, Transaction, TxKind
from chainflow.domain.transactions.state import TxStatus, is_terminal
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.signing.keystore import MasterKey
from chainflow.workers.drain import drain_lane
from chainflow.workers.main import run_round
from chainflow.workers.track import track_chain
from tests.support.chains import ANVIL_CHAIN_ID
from tests.support.chaos import (
    GWEI,
    assert_lane_settled,
    assert_valid_replacements,
    chain_config,
    deploy_reverter,
    describe,
    force_gas_limit,
    head,
    lane_next_nonce,
    lane_transactions,
    mine_with_base_fee,
    mining_stopped,
    receipt_of,
    resume_mining,
    run_rounds_until,
    run_until_final_or_deadline,
    send_foreign,
    sign_without_sending,
    transitions,
    update_chain,
)
from tests.support.engine import (
    FAST_STUCK,
    TEST_CONFIG,
    EngineHarness,
    harness_fixture,
    has_status,
    open_engine_harness,
)
from tests.support.polling import eventually
from tests.support.rpc_proxy import serve_proxy

# Stuck detection out of reach: a dropped transaction can only come back by a plain re-send.
NO_BUMPS = dataclasses.replace(TEST_CONFIG, stuck_after_s=600.0, stuck_after_blocks=10_000)


patient_harness = harness_fixture(config=NO_BUMPS)


# Stuck after 1 s: a spike mines no block of ours, so only the time rule bumps.
spike_harness = harness_fixture(own_anvil=True, config=FAST_STUCK)


deep_harness = harness_fixture(own_anvil=True, confirmations=3)


def all_have(status: TxStatus) -> Callable[[list[Transaction]], bool]:
    return lambda rows: all(tx.status is status for tx in rows)


def not_final(rows: list[Transaction]) -> bool:
    return not any(is_terminal(tx.status) for tx in rows)


async def in_nonce_order(rows: list[Transaction]) -> None:
    """A later request never holds a nonce unless every earlier one holds a lower one."""
    for earlier, later in itertools.pairwise(rows):
        if later.nonce is not None:
            assert earlier.nonce is not None
            assert earlier.nonce < later.nonce


class TestDroppedTransaction:
    async def test_dropped_transaction_is_sent_again_with_identical_bytes(
        self, patient_harness: EngineHarness
    ) -> None:
        harness, rpc = patient_harness, patient_harness.rpc
        wallet = await harness.wallet()
        async with mining_stopped(rpc):
            tx_id = await harness.submit(wallet, value="1")
            (tx,) = await harness.run_until([tx_id], has_status(TxStatus.SUBMITTED))
            (attempt,) = tx.attempts
            await rpc.call("anvil_dropTransaction", [attempt.hash])
            assert await rpc.call("eth_getTransactionByHash", [attempt.hash]) is None
            await resume_mining(rpc)
            (tx,) = await harness.run_until_final([tx_id])
        assert tx.status is TxStatus.CONFIRMED
        (again,) = tx.attempts
        assert again.id == attempt.id
        assert again.broadcast_count >= 2
        assert tx.final_hash == attempt.hash
        on_chain = await rpc.call("eth_getRawTransactionByHash", [attempt.hash])
        assert on_chain == "0x" + attempt.raw.hex()
        await assert_lane_settled(harness, wallet)


class TestMiningStopped:
    async def test_requests_stay_submitted_while_mining_stops_then_confirm(
        self, fast_stuck_harness: EngineHarness
    ) -> None:
        harness, rpc = fast_stuck_harness, fast_stuck_harness.rpc
        wallet = await harness.wallet()
        async with mining_stopped(rpc):
            ids = [await harness.submit(wallet, value=str(i + 1)) for i in range(3)]
            await harness.run_until(ids, has_status(TxStatus.SUBMITTED))
            stopped_at = await head(rpc)

            async def still_submitted(rows: list[Transaction]) -> None:
                assert [tx.status for tx in rows] == [TxStatus.SUBMITTED] * 3

            # Mining stays off until the tracker has judged the lowest nonce stuck and bumped it.
            await run_rounds_until(
                harness,
                ids,
                lambda rows: any(len(tx.attempts) > 1 for tx in rows),
                each_round=still_submitted,
            )
            assert await head(rpc) == stopped_at
            assert await harness.chain_nonce(wallet) == 0
            await resume_mining(rpc)
            rows = await harness.run_until(ids, has_status(TxStatus.CONFIRMED))
        assert [tx.nonce for tx in rows] == [0, 1, 2]
        for tx in rows:
            assert_valid_replacements(tx.attempts, cap_wei=None)
        await assert_lane_settled(harness, wallet)


class TestBaseFeeSpike:
    SPIKE = 30 * GWEI

    async def test_stuck_request_is_bumped_up_to_the_cap_and_confirms(
        self, spike_harness: EngineHarness
    ) -> None:
        harness, rpc = spike_harness, spike_harness.rpc
        cap = 40 * GWEI  # below what the market asks after the spike (2 x base + tip)
        await update_chain(harness, max_fee_per_gas_cap=cap)
        wallet = await harness.wallet()
        async with mining_stopped(rpc):
            tx_id = await harness.submit(wallet, value="1")
            (tx,) = await harness.run_until([tx_id], has_status(TxStatus.SUBMITTED))
            (original,) = tx.attempts
            assert original.max_fee_per_gas_wei is not None
            assert original.max_fee_per_gas_wei < self.SPIKE
            await mine_with_base_fee(rpc, self.SPIKE)  # cannot include it: anvil drops it
            assert await receipt_of(rpc, original.hash) is None
            await resume_mining(rpc)
            (tx,) = await harness.run_until_final([tx_id])
        assert tx.status is TxStatus.CONFIRMED
        assert len(tx.attempts) >= 2
        assert_valid_replacements(tx.attempts, cap_wei=cap)
        mined = next(a for a in tx.attempts if a.hash == tx.final_hash)
        assert mined.kind is AttemptKind.BUMP
        block = await rpc.call("eth_getBlockByNumber", [hex(tx.block_number or 0), False])
        assert original.max_fee_per_gas_wei < int(block["baseFeePerGas"], 16)
        await assert_lane_settled(harness, wallet)

    async def test_cap_below_a_valid_bump_keeps_the_request_submitted(
        self, spike_harness: EngineHarness
    ) -> None:
        harness, rpc = spike_harness, spike_harness.rpc
        cap = 2 * GWEI  # the market asks more, so the original is signed at the cap itself
        await update_chain(harness, max_fee_per_gas_cap=cap)
        wallet = await harness.wallet()
        async with mining_stopped(rpc):
            tx_id = await harness.submit(wallet, value="1")
            (tx,) = await harness.run_until([tx_id], has_status(TxStatus.SUBMITTED))
            (original,) = tx.attempts
            assert original.max_fee_per_gas_wei == cap
            await mine_with_base_fee(rpc, self.SPIKE)
            await resume_mining(rpc)

        async def submitted_under_cap(rows: list[Transaction]) -> None:
            (row,) = rows
            assert row.status is TxStatus.SUBMITTED, (row.status, row.error_code)
            assert_valid_replacements(row.attempts, cap_wei=cap)

        def stuck_for_long(rows: list[Transaction]) -> bool:
            attempt = rows[0].attempts[0]
            if attempt.first_sent_at is None or attempt.last_sent_at is None:
                return False
            waited = attempt.last_sent_at - attempt.first_sent_at
            return waited >= timedelta(seconds=1.5 * FAST_STUCK.stuck_after_s)

        (tx,) = await run_rounds_until(
            harness, [tx_id], stuck_for_long, each_round=submitted_under_cap
        )
        assert [a.id for a in tx.attempts] == [original.id]  # +10 % would cross the cap
        await rpc.call("anvil_setNextBlockBaseFeePerGas", [hex(GWEI)])  # the spike passes
        (tx,) = await harness.run_until_final([tx_id])
        assert tx.status is TxStatus.CONFIRMED
        assert tx.final_hash == original.hash
        await assert_lane_settled(harness, wallet)


class TestReorg:
    async def test_receipt_lost_in_a_reorg_goes_back_to_submitted_and_confirms_once(
        self, deep_harness: EngineHarness
    ) -> None:
        harness, rpc = deep_harness, deep_harness.rpc
        wallet = await harness.wallet()
        tx_id = await harness.submit(wallet, value="1")
        (tx,) = await harness.run_until([tx_id], has_status(TxStatus.MINED))
        (attempt,) = tx.attempts
        assert tx.block_number is not None
        depth = await head(rpc) - tx.block_number + 1
        assert depth < 3
        await rpc.call("anvil_reorg", [depth, []])  # replace the blocks, without our tx
        assert await receipt_of(rpc, attempt.hash) is None

        async def mine_while_mined(rows: list[Transaction]) -> None:
            if rows[0].status is TxStatus.MINED:
                await rpc.call("evm_mine")

        (final,) = await run_rounds_until(
            harness, [tx_id], all_have(TxStatus.CONFIRMED), each_round=mine_while_mined
        )
        assert transitions(final) == [
            (None, "queued"),
            ("queued", "signed"),
            ("signed", "submitted"),
            ("submitted", "mined"),
            ("mined", "submitted"),
            ("submitted", "mined"),
            ("mined", "confirmed"),
        ]
        assert [a.id for a in final.attempts] == [attempt.id]  # the same bytes, re-sent
        assert final.block_hash != tx.block_hash
        assert final.confirmations >= 3
        await assert_lane_settled(harness, wallet)


class TestCrashAfterSigning:
    async def test_signed_attempt_never_sent_is_sent_with_identical_bytes(
        self, harness: EngineHarness
    ) -> None:
        rpc = harness.rpc
        wallet = await harness.wallet()
        tx_id = await harness.submit(wallet, value="1")
        (sent,) = await sign_without_sending(harness, wallet)
        tx = await harness.get(tx_id)
        assert tx.status is TxStatus.SIGNED
        (attempt,) = tx.attempts
        assert (attempt.nonce, attempt.broadcast_count) == (0, 0)
        assert await rpc.call("eth_getTransactionByHash", [attempt.hash]) is None
        (tx,) = await harness.run_until_final([tx_id])
        assert tx.status is TxStatus.CONFIRMED
        assert [a.id for a in tx.attempts] == [attempt.id]
        assert tx.final_hash == attempt.hash
        assert tx.nonce == sent.nonce == 0
        on_chain = await rpc.call("eth_getRawTransactionByHash", [attempt.hash])
        assert on_chain == "0x" + sent.raw.hex()
        await assert_lane_settled(harness, wallet)

    async def test_a_signed_attempt_a_drain_of_this_process_is_sending_is_left_to_it(
        self, harness: EngineHarness
    ) -> None:
        # Rounds track while they drain: the tracker must not send what the drain is sending.
        engine = harness.engine
        wallet = await harness.wallet()
        tx_id = await harness.submit(wallet, value="1")
        (sent,) = await sign_without_sending(harness, wallet)
        chain = await chain_config(harness)
        engine.state.sending.add(sent.tx_id)
        try:
            assert await track_chain(engine, chain) == 1
        finally:
            engine.state.sending.discard(sent.tx_id)
        tx = await harness.get(tx_id)
        assert (tx.status, tx.attempts[0].broadcast_count) == (TxStatus.SIGNED, 0)
        assert await harness.rpc.call("eth_getTransactionByHash", [sent.hash]) is None
        await track_chain(engine, chain)  # no drain any more: a crash left it, it goes now
        tx = await harness.get(tx_id)
        assert (tx.status, tx.attempts[0].broadcast_count) == (TxStatus.SUBMITTED, 1)

    async def test_a_signed_attempt_no_drain_is_sending_goes_while_its_lane_is_drained(
        self, harness: EngineHarness
    ) -> None:
        # Signed by a drain that crashed before its send, in a lane drained round after round
        # (a later request waits behind it, drain/estimate.py): the tracker sends it.
        engine = harness.engine
        wallet = await harness.wallet()
        tx_id = await harness.submit(wallet, value="1")
        (sent,) = await sign_without_sending(harness, wallet)
        chain = await chain_config(harness)
        engine.state.draining.add((wallet.id, chain.chain_id))
        try:
            assert await track_chain(engine, chain) == 1
        finally:
            engine.state.draining.discard((wallet.id, chain.chain_id))
        tx = await harness.get(tx_id)
        assert (tx.status, tx.attempts[0].broadcast_count) == (TxStatus.SUBMITTED, 1), describe(tx)
        assert await harness.rpc.call("eth_getTransactionByHash", [sent.hash]) is not None


class TestTrackerBesideADrain:
    async def test_a_request_the_drain_signed_and_is_sending_is_left_to_it(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        anvil_url: str,
        master_key: MasterKey,
    ) -> None:
        # A round tracks while a drain of its process sends (rounds overlap): the drain's
        # signed requests must be in WorkerState.sending from its commit on, or the tracker
        # sends them too. Here the drain's send is held by a proxy in front of anvil while a
        # tracking round runs.
        async with (
            aiohttp.ClientSession() as http,
            serve_proxy(anvil_url, http) as proxy,
            open_engine_harness(sessionmaker, proxy.url, master_key) as harness,
        ):
            engine = harness.engine
            chain = await chain_config(harness)
            wallet = await harness.wallet()
            tx_id = await harness.submit(wallet, value="1")
            proxy.hold = "eth_sendRawTransaction"
            drain = asyncio.create_task(drain_lane(engine, chain, wallet.id))

            async def held() -> bool:
                return proxy.holding.is_set()

            try:
                await eventually(held, what="the drain's send held")
                tx = await harness.get(tx_id)
                (attempt,) = tx.attempts
                assert (tx.status, attempt.broadcast_count) == (TxStatus.SIGNED, 0)
                assert await track_chain(engine, chain) == 1
                tx = await harness.get(tx_id)
                assert (tx.status, tx.attempts[0].broadcast_count) == (TxStatus.SIGNED, 0)
                assert proxy.received.count("eth_sendRawTransaction") == 1  # the drain's only
            finally:
                proxy.release()
                assert await drain == 1
            assert not engine.state.sending  # the drain ended: nothing is left to it
            (tx,) = await harness.run_until_final([tx_id])
            assert tx.status is TxStatus.CONFIRMED
            assert [a.id for a in tx.attempts] == [attempt.id]
            await assert_lane_settled(harness, wallet)


class TestKeyUsedOutsideChainflow:
    async def test_foreign_transaction_before_submit_is_skipped_over(
        self, harness: EngineHarness
    ) -> None:
        wallet = await harness.wallet()
        await send_foreign(harness, wallet, nonce=0)
        tx_id = await harness.submit(wallet, value="1")
        (tx,) = await harness.run_until_final([tx_id])
        assert (tx.status, tx.nonce) == (TxStatus.CONFIRMED, 1)
        await assert_lane_settled(harness, wallet, foreign_nonces=[0])

    async def test_foreign_transaction_taking_our_signed_nonce_fails_the_request_once(
        self, harness: EngineHarness
    ) -> None:
        # The tracker waits max(3 block times, 2 s) before calling a nonce taken.
        await update_chain(harness, block_time_s=0.5)
        wallet = await harness.wallet()
        taken = await harness.submit(wallet, value="1")
        (sent,) = await sign_without_sending(harness, wallet)
        assert sent.nonce == 0
        await send_foreign(harness, wallet, nonce=0)
        (tx,) = await harness.run_until_final([taken], timeout_s=15)
        assert tx.status is TxStatus.FAILED
        assert tx.error_code == "nonce_taken_externally"
        assert [a.id for a in tx.attempts] == [sent.attempt_id]
        for _ in range(3):
            await run_round(harness.engine, ANVIL_CHAIN_ID)
        tx = await harness.get(taken)
        assert (tx.status, len(tx.attempts)) == (TxStatus.FAILED, 1)
        assert await receipt_of(harness.rpc, tx.attempts[0].hash) is None
        following = await harness.submit(wallet, value="2")
        (after,) = await harness.run_until_final([following])
        assert (after.status, after.nonce) == (TxStatus.CONFIRMED, 1)
        await assert_lane_settled(harness, wallet, foreign_nonces=[0])


class TestInsufficientFunds:
    async def test_unfunded_requests_wait_in_order_then_confirm_once_funded(
        self, harness: EngineHarness
    ) -> None:
        rpc = harness.rpc
        wallet = await harness.wallet(balance_wei=0)
        ids = [await harness.submit(wallet, value=str(i + 1)) for i in range(2)]

        async def waiting_in_order(rows: list[Transaction]) -> None:
            assert not_final(rows), [(tx.status, tx.error_code) for tx in rows]
            await in_nonce_order(rows)

        def refused_for_a_while(rows: list[Transaction]) -> bool:
            attempts = [a for tx in rows for a in tx.attempts]
            return bool(attempts) and all(
                a.last_error == "insufficient_funds"
                and a.last_sent_at is not None
                and a.last_sent_at - a.created_at >= timedelta(seconds=0.5)
                for a in attempts
            )

        await run_rounds_until(harness, ids, refused_for_a_while, each_round=waiting_in_order)
        # A request submitted while the lane waits for funds must not overtake it either.
        late = await harness.submit(wallet, value="3")
        submitted_at = (await harness.get(late)).created_at

        def refused_since_late_submit(rows: list[Transaction]) -> bool:
            attempts = [a for tx in rows for a in tx.attempts]
            return all(
                a.last_sent_at is not None
                and a.last_sent_at - submitted_at >= timedelta(seconds=0.5)
                for a in attempts
            )

        await run_rounds_until(
            harness, [*ids, late], refused_since_late_submit, each_round=waiting_in_order
        )
        assert await harness.chain_nonce(wallet, "pending") == 0
        async with unit_of_work(harness.sessionmaker) as session:
            offered = await repository.lanes_with_queued(
                session, ANVIL_CHAIN_ID, owner=harness.engine.ports.owner, now=utcnow()
            )
        assert wallet.id not in offered  # no drain asks the node about a lane that waits
        await rpc.call("anvil_setBalance", [wallet.address, hex(10**21)])
        rows = await run_rounds_until(
            harness, [*ids, late], all_have(TxStatus.CONFIRMED), each_round=in_nonce_order
        )
        assert [tx.nonce for tx in rows] == [0, 1, 2]
        await assert_lane_settled(harness, wallet)


class TestFatalNodeError:
    async def test_refused_last_nonce_goes_to_the_next_request(
        self, harness: EngineHarness
    ) -> None:
        wallet = await harness.wallet()
        bad = await harness.submit(wallet, value="1", data="0x1234")
        await force_gas_limit(harness, bad, 40_000_000)
        (tx,) = await harness.run_until_final([bad])
        assert (tx.status, tx.nonce, tx.error_code) == (TxStatus.FAILED, None, "rpc_fatal")
        assert [a.nonce for a in tx.attempts] == [0]
        assert await lane_next_nonce(harness, wallet) == 0
        good = await harness.submit(wallet, value="2")
        (after,) = await harness.run_until_final([good])
        assert (after.status, after.nonce) == (TxStatus.CONFIRMED, 0)
        await assert_lane_settled(harness, wallet)

    async def test_refused_nonce_below_the_last_is_filled_by_a_self_transfer(
        self, harness: EngineHarness
    ) -> None:
        wallet = await harness.wallet()
        bad = await harness.submit(wallet, value="1", data="0x1234")
        await force_gas_limit(harness, bad, 40_000_000)
        good = await harness.submit(wallet, value="2")
        failed, confirmed = await harness.run_until_final([bad, good])
        assert (failed.status, failed.nonce, failed.error_code) == (
            TxStatus.FAILED,
            None,
            "rpc_fatal",
        )
        assert (confirmed.status, confirmed.nonce) == (TxStatus.CONFIRMED, 1)

        async def filler_confirmed() -> Transaction | None:
            await run_round(harness.engine, ANVIL_CHAIN_ID)
            rows = await lane_transactions(harness, wallet)
            fillers = [tx for tx in rows if tx.kind is TxKind.FILLER]
            assert len(fillers) == 1
            return fillers[0] if fillers[0].status is TxStatus.CONFIRMED else None

        filler = await eventually(filler_confirmed)
        assert filler.nonce == 0
        assert (filler.to_address, filler.value_wei, filler.data) == (wallet.address, 0, b"")
        await assert_lane_settled(harness, wallet)

    async def test_explicit_gas_limit_below_the_intrinsic_gas_fails_without_a_gap(
        self, harness: EngineHarness
    ) -> None:
        wallet = await harness.wallet()
        bad = await harness.submit(wallet, value="1", data="0x" + "ab" * 64, gas_limit=21_000)
        (tx,) = await run_until_final_or_deadline(harness, [bad], timeout_s=5)
        assert (tx.status, tx.nonce, tx.error_code) == (
            TxStatus.FAILED,
            None,
            "gas_limit_too_low",
        ), describe(tx)
        assert tx.attempts == []
        good = await harness.submit(wallet, value="2")
        (after,) = await harness.run_until_final([good])
        assert (after.status, after.nonce) == (TxStatus.CONFIRMED, 0)
        await assert_lane_settled(harness, wallet)

    async def test_gas_limit_above_the_block_gas_limit_fails_without_a_gap(
        self, harness: EngineHarness
    ) -> None:
        wallet = await harness.wallet()
        bad = await harness.submit(wallet, value="1", gas_limit=40_000_000)
        (tx,) = await run_until_final_or_deadline(harness, [bad], timeout_s=3)
        assert (tx.status, tx.nonce, tx.error_code) == (
            TxStatus.FAILED,
            None,
            "rpc_fatal",
        ), describe(tx)
        good = await harness.submit(wallet, value="2")
        (after,) = await harness.run_until_final([good])
        assert (after.status, after.nonce) == (TxStatus.CONFIRMED, 0)
        await assert_lane_settled(harness, wallet)


class TestEstimateRevert:
    async def test_reverting_call_fails_with_its_reason_and_takes_no_nonce(
        self, harness: EngineHarness
    ) -> None:
        contract = await deploy_reverter(harness.rpc, "nope")
        wallet = await harness.wallet()
        tx_id = await harness.submit(wallet, to=contract, data="0x12345678")
        (tx,) = await harness.run_until_final([tx_id])
        assert (tx.status, tx.nonce, tx.error_code) == (
            TxStatus.FAILED,
            None,
            "estimate_reverted",
        )
        assert tx.error_message is not None
        assert "nope" in tx.error_message
        assert tx.attempts == []
        assert await lane_next_nonce(harness, wallet) == 0
        good = await harness.submit(wallet, value="1")
        (after,) = await harness.run_until_final([good])
        assert (after.status, after.nonce) == (TxStatus.CONFIRMED, 0)
        await assert_lane_settled(harness, wallet)


class TestCancel:
    async def test_queued_request_is_cancelled_at_once(self, harness: EngineHarness) -> None:
        wallet = await harness.wallet()
        tx_id = await harness.submit(wallet, value="1")
        async with unit_of_work(harness.sessionmaker) as session:
            cancelled = await txs.cancel(session, tx_id, api_key_id=None, is_admin=True)
        assert cancelled.status is TxStatus.CANCELLED
        await run_round(harness.engine, ANVIL_CHAIN_ID)
        tx = await harness.get(tx_id)
        assert (tx.status, tx.nonce, tx.attempts) == (TxStatus.CANCELLED, None, [])
        assert await lane_next_nonce(harness, wallet) == 0
        await assert_lane_settled(harness, wallet)

    async def test_submitted_request_is_replaced_by_a_self_transfer_at_its_nonce(
        self, harness: EngineHarness
    ) -> None:
        rpc = harness.rpc
        wallet = await harness.wallet()
        async with mining_stopped(rpc):
            tx_id = await harness.submit(wallet, value="1")
            (tx,) = await harness.run_until([tx_id], has_status(TxStatus.SUBMITTED))
            (original,) = tx.attempts
            async with unit_of_work(harness.sessionmaker) as session:
                await txs.cancel(session, tx_id, api_key_id=None, is_admin=True)
            (tx,) = await harness.run_until(
                [tx_id], lambda row: any(a.kind is AttemptKind.CANCEL for a in row.attempts)
            )
            assert tx.status is TxStatus.SUBMITTED
            cancel = next(a for a in tx.attempts if a.kind is AttemptKind.CANCEL)
            assert_valid_replacements([original, cancel], cap_wei=None)
            await resume_mining(rpc)
            (tx,) = await harness.run_until_final([tx_id])
        assert tx.status is TxStatus.CANCELLED
        assert await receipt_of(rpc, original.hash) is None
        assert_valid_replacements(tx.attempts, cap_wei=None)
        mined = await rpc.call("eth_getTransactionByHash", [tx.final_hash])
        assert mined["to"].lower() == wallet.address.lower()
        assert (int(mined["value"], 16), mined["input"]) == (0, "0x")
        assert int(mined["nonce"], 16) == original.nonce
        await assert_lane_settled(harness, wallet)
