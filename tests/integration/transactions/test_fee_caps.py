"""Requests whose fee cap cannot pay the base fee (issue 14): they never take a nonce nor hold
their lane, a signed one priced out later is cancelled after `fee_cap_wait_s`, a cancel is
never bound by the request's own cap, and a request stuck at its cap is logged once.

Each test runs on its own anvil (base fees are changed) and ends by reading the chain
(`assert_lane_settled`): every request terminal, nonces 0..n-1, nothing executed twice.
"""

import dataclasses
from datetime import UTC, datetime, timedelta

import structlog

from chainflow.core.clock import utcnow
from chainflow.domain.transactions import repository
from chainflow.domain.transactions import service as txs
from chainflow.domain.transactions.drain.fee_floor import known_floor
from chainflow.domain.transactions.models import AttemptKind, Transaction, TxAttempt
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.transactions.track.replace import replace
from chainflow.infra.db.uow import unit_of_work
from chainflow.workers.send import send_and_record
from tests.support.chains import ANVIL_CHAIN_ID
from tests.support.chaos import (
    GWEI,
    assert_lane_settled,
    assert_valid_replacements,
    by_creation,
    chain_config,
    describe,
    mine_with_base_fee,
    mining_stopped,
    run_rounds_until,
    sign_without_sending,
    update_chain,
)
from tests.support.engine import (
    FAST_STUCK,
    EngineHarness,
    harness_fixture,
    has_status,
)

PRICED_OUT = "fee_cap_below_base_fee"
# A narrow lane (3 in flight) so that capped requests at its head would fill its room, a
# short wait before a priced-out signed request is cancelled, and stuck after 1 s (a base fee
# spike mines no block of ours: only the time rule bumps).
FEE_CAP_CONFIG = dataclasses.replace(
    FAST_STUCK, max_in_flight_per_lane=3, batch_size=3, fee_cap_wait_s=1.0
)


harness = harness_fixture(own_anvil=True, config=FEE_CAP_CONFIG)


# The default wait (600 s): no priced-out cancel comes within a test; stuck after 1 s.
patient_harness = harness_fixture(own_anvil=True, config=FAST_STUCK)


def in_s(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def first_cancel(tx: Transaction) -> tuple[TxAttempt, TxAttempt]:
    """The first cancel attempt and the attempt it replaced; the mined one is a cancel."""
    ordered = by_creation(tx.attempts)
    at = next(i for i, a in enumerate(ordered) if a.kind is AttemptKind.CANCEL)
    (mined,) = [a for a in ordered if a.hash == tx.final_hash]
    assert mined.kind is AttemptKind.CANCEL, describe(tx)
    return ordered[at - 1], ordered[at]


class TestUnsignedWhileBelowTheBaseFee:
    async def test_capped_requests_wait_unsigned_and_later_ones_of_the_lane_confirm(
        self, harness: EngineHarness
    ) -> None:
        rpc = harness.rpc
        await mine_with_base_fee(rpc, 10 * GWEI)  # the next block's base fee is 8.75 gwei
        wallet = await harness.wallet()
        # 9 wei: as text "9" sorts above "8750000000", so the cap must compare as a number.
        caps = [9, GWEI, 2 * GWEI]  # as many as the lane's room: they must not take it
        capped = [await harness.submit(wallet, value="1", max_fee_per_gas=str(c)) for c in caps]
        later = [await harness.submit(wallet, value=str(i)) for i in range(2, 7)]
        rows = await harness.run_until(later, has_status(TxStatus.CONFIRMED))
        assert sorted(tx.nonce or 0 for tx in rows) == list(range(5))
        for tx_id in capped:
            tx = await harness.get(tx_id)
            assert (tx.status, tx.nonce, tx.attempts) == (TxStatus.QUEUED, None, []), describe(tx)
        assert await harness.chain_nonce(wallet, "pending") == await harness.chain_nonce(wallet)
        floor = known_floor(harness.engine.state.fees, await chain_config(harness))
        async with unit_of_work(harness.sessionmaker) as session:
            offered = await repository.lanes_with_queued(
                session, ANVIL_CHAIN_ID, owner=harness.engine.ports.owner, now=utcnow(), floor=floor
            )
        assert offered == {wallet.id: 0}  # no drain asks the node about a lane that waits

        await mine_with_base_fee(rpc, GWEI // 2)  # the base fee falls below two of the caps
        rows = await harness.run_until_final(capped[1:])
        assert sorted(tx.nonce or 0 for tx in rows) == [5, 6]
        for tx, cap in zip(rows, caps[1:], strict=True):
            assert tx.status is TxStatus.CONFIRMED, describe(tx)
            assert all((a.max_fee_per_gas_wei or 0) <= cap for a in tx.attempts)
        still = await harness.get(capped[0])
        assert (still.status, still.nonce) == (TxStatus.QUEUED, None)
        async with unit_of_work(harness.sessionmaker) as session:
            await txs.cancel(
                session, capped[0], api_key_id=None, is_admin=True
            )  # waiting unsigned: cancelled at once
        await assert_lane_settled(harness, wallet)

    async def test_valid_until_passing_first_expires_it_with_the_reason(
        self, harness: EngineHarness
    ) -> None:
        await mine_with_base_fee(harness.rpc, 10 * GWEI)
        wallet = await harness.wallet()
        capped = await harness.submit(
            wallet, value="1", max_fee_per_gas=str(2 * GWEI), valid_until=in_s(2)
        )
        later = [await harness.submit(wallet, value=str(i)) for i in range(2, 5)]
        expired, *rows = await harness.run_until_final([capped, *later])
        assert (expired.status, expired.nonce, expired.attempts) == (TxStatus.EXPIRED, None, [])
        assert expired.error_code == PRICED_OUT, describe(expired)
        assert [(tx.status, tx.nonce) for tx in rows] == [
            (TxStatus.CONFIRMED, nonce) for nonce in range(3)
        ]
        await assert_lane_settled(harness, wallet)

    async def test_a_chain_cap_below_the_base_fee_keeps_every_request_unsigned(
        self, harness: EngineHarness
    ) -> None:
        await update_chain(harness, max_fee_per_gas_cap=5 * GWEI)
        await mine_with_base_fee(harness.rpc, 10 * GWEI)
        wallet = await harness.wallet()
        soon = await harness.submit(wallet, value="1", valid_until=in_s(2))
        waiting = [await harness.submit(wallet, value=str(i)) for i in range(2, 4)]
        (expired,) = await harness.run_until([soon], has_status(TxStatus.EXPIRED))
        assert (expired.nonce, expired.error_code) == (None, PRICED_OUT)
        rows = [await harness.get(tx_id) for tx_id in waiting]
        assert [(tx.status, tx.nonce) for tx in rows] == [(TxStatus.QUEUED, None)] * 2
        assert await harness.chain_nonce(wallet, "pending") == 0

        await mine_with_base_fee(harness.rpc, GWEI)
        rows = await harness.run_until_final(waiting)
        assert [(tx.status, tx.nonce) for tx in rows] == [
            (TxStatus.CONFIRMED, 0),
            (TxStatus.CONFIRMED, 1),
        ]
        await assert_lane_settled(harness, wallet)


class TestPricedOutAfterSigning:
    async def test_a_signed_request_priced_out_is_cancelled_and_frees_its_lane(
        self, harness: EngineHarness
    ) -> None:
        rpc, cap = harness.rpc, 3 * GWEI
        wallet = await harness.wallet()
        async with mining_stopped(rpc):
            capped = await harness.submit(wallet, value="1", max_fee_per_gas=str(cap))
            later = [await harness.submit(wallet, value=str(i)) for i in range(2, 4)]
            rows = await harness.run_until([capped, *later], has_status(TxStatus.SUBMITTED))
            assert rows[0].nonce == 0
            await mine_with_base_fee(rpc, 30 * GWEI)  # anvil drops what cannot pay it
        tx, *rows = await harness.run_until_final([capped, *later])
        assert (tx.status, tx.nonce, tx.error_code) == (TxStatus.CANCELLED, 0, PRICED_OUT), (
            describe(tx)
        )
        replaced, cancel = first_cancel(tx)
        assert (replaced.max_fee_per_gas_wei or 0) <= cap < (cancel.max_fee_per_gas_wei or 0)
        assert_beats_by_the_bump_percent(replaced, cancel)  # not bound by the request's cap
        assert [(row.status, row.nonce) for row in rows] == [
            (TxStatus.CONFIRMED, 1),
            (TxStatus.CONFIRMED, 2),
        ], [describe(row) for row in rows]
        await assert_lane_settled(harness, wallet)

    async def test_the_cancel_of_a_signed_request_the_node_refuses_is_sent_above_its_cap(
        self, patient_harness: EngineHarness
    ) -> None:
        harness, rpc, cap = patient_harness, patient_harness.rpc, 3 * GWEI
        wallet = await harness.wallet()
        tx_id = await harness.submit(wallet, value="1", max_fee_per_gas=str(cap))
        await sign_without_sending(harness, wallet)  # signed at the cap, not sent yet
        await mine_with_base_fee(rpc, 30 * GWEI)  # ... and now the node refuses it
        (tx,) = await harness.run_until([tx_id], lambda t: t.attempts[0].last_error is not None)
        assert (tx.status, tx.attempts[0].last_error) == (TxStatus.SIGNED, "underpriced")
        async with unit_of_work(harness.sessionmaker) as session:
            assert (
                await txs.cancel(session, tx_id, api_key_id=None, is_admin=True)
            ).cancel_requested
        (tx,) = await harness.run_until_final([tx_id])
        assert (tx.status, tx.nonce, tx.error_code) == (TxStatus.CANCELLED, 0, None), describe(tx)
        replaced, cancel = first_cancel(tx)
        assert (replaced.max_fee_per_gas_wei or 0) <= cap < (cancel.max_fee_per_gas_wei or 0)
        assert_beats_by_the_bump_percent(replaced, cancel)
        await assert_lane_settled(harness, wallet)


class TestCancelOfASignedRequest:
    async def test_a_refused_original_does_not_release_a_nonce_its_cancel_may_hold(
        self, patient_harness: EngineHarness
    ) -> None:
        # The race: a drain sends the original while the tracker (user cancel) signs a cancel
        # at its nonce; the node then refuses the original for good. The cancel may be at a
        # node: the nonce stays with the request, and the cancel takes it.
        harness = patient_harness
        engine, chain = harness.engine, await chain_config(harness)
        wallet = await harness.wallet()
        tx_id = await harness.submit(wallet, value="1", gas_limit=40_000_000)  # "fatal"
        (original,) = await sign_without_sending(harness, wallet)
        async with unit_of_work(harness.sessionmaker) as session:
            await txs.cancel(session, tx_id, api_key_id=None, is_admin=True)
        market = await engine.state.fees.fees(harness.rpc, chain)
        async with unit_of_work(harness.sessionmaker) as session:
            cancel = await replace(
                session,
                chain,
                tx_id,
                market=market,
                signers=engine.state.signers,
                config=engine.ports.config,
                cancel=True,
            )
        assert cancel is not None  # signed, unsent
        await send_and_record(engine, chain, [original])  # refused: intrinsic gas too high
        tx = await harness.get(tx_id)
        assert (tx.status, tx.nonce) == (TxStatus.SIGNED, 0), describe(tx)
        (tx,) = await harness.run_until_final([tx_id])
        assert (tx.status, tx.nonce) == (TxStatus.CANCELLED, 0), describe(tx)
        first_cancel(tx)  # the mined attempt is the cancel
        await assert_lane_settled(harness, wallet)


def assert_beats_by_the_bump_percent(original: TxAttempt, cancel: TxAttempt) -> None:
    """Both fee fields of the cancel are >= 112.5 % of the original's (the bump percent)."""
    assert_valid_replacements([original, cancel], cap_wei=None)
    for field in ("max_fee_per_gas_wei", "max_priority_fee_per_gas_wei"):
        before, after = getattr(original, field) or 0, getattr(cancel, field) or 0
        assert after * 1000 >= before * 1125, (field, before, after)


class TestStuckAtTheCap:
    async def test_it_is_logged_once_not_every_round(self, patient_harness: EngineHarness) -> None:
        harness, rpc, cap = patient_harness, patient_harness.rpc, 2 * GWEI
        await update_chain(harness, max_fee_per_gas_cap=cap)  # no bump, and no cancel, fits
        wallet = await harness.wallet()
        async with mining_stopped(rpc):
            tx_id = await harness.submit(wallet, value="1")
            await harness.run_until([tx_id], has_status(TxStatus.SUBMITTED))
            await mine_with_base_fee(rpc, 30 * GWEI)
        rounds = 0

        async def count(rows: list[Transaction]) -> None:
            nonlocal rounds
            rounds += 1
            assert rows[0].status is TxStatus.SUBMITTED, describe(rows[0])

        with structlog.testing.capture_logs() as logs:
            (tx,) = await run_rounds_until(
                harness, [tx_id], lambda _rows: rounds >= 40, each_round=count
            )
        capped = [entry for entry in logs if entry["event"] == "tx.bump_capped"]
        assert len(capped) == 1, capped
        assert capped[0]["tx_id"] == str(tx_id)
        # Every engine line about a request names its lane too (issue 18).
        assert (capped[0]["chain_id"], capped[0]["wallet"]) == (tx.chain_id, tx.from_address)
        assert len(tx.attempts) == 1  # +10 % would cross the cap: nothing else was signed
        await rpc.call("anvil_setNextBlockBaseFeePerGas", [hex(GWEI)])  # the spike passes
        (tx,) = await harness.run_until_final([tx_id])
        assert tx.status is TxStatus.CONFIRMED
        await assert_lane_settled(harness, wallet)
