"""A wallet whose stored key cannot be decrypted (its ciphertext tampered with, or its wrapped
data key moved from another row: the AAD no longer matches) is its lane's problem only: the
lane waits with `paused_reason` "key_unreadable", a log line names the wallet id (never key
material), the other lanes drained and the other bumps of the same round go on; once an
operator repairs the row the lane resumes, without a restart. Before, the keystore's
DecryptionFailed aborted the chain's whole signing transaction and tracking round."""

import dataclasses
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import structlog
from sqlalchemy import update

from chainflow.domain.transactions import service as txs
from chainflow.domain.transactions.models import AttemptKind
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.wallets.models import Wallet, WalletChain
from chainflow.infra.db.uow import unit_of_work
from chainflow.workers.engine import Engine
from chainflow.workers.main import run_round
from chainflow.workers.track import track_chain
from tests.support.chains import ANVIL_CHAIN_ID
from tests.support.chaos import (
    assert_lane_settled,
    bumped_while_paused,
    chain_config,
    check_only_its_lane_waits,
    lane_transactions,
    mining_stopped,
    paused_reason,
)
from tests.support.engine import TEST_CONFIG, EngineHarness, harness_fixture, has_status
from tests.support.polling import eventually

_Sealed = tuple[bytes, bytes]
# Every tracking pass finds a sent request stuck (0.05 s after its send): a bump each pass.
eager_harness = harness_fixture(
    config=dataclasses.replace(TEST_CONFIG, stuck_after_s=0.05, stuck_after_blocks=1)
)


async def _sealed_columns(harness: EngineHarness, wallet: Wallet) -> _Sealed:
    async with unit_of_work(harness.sessionmaker) as session:
        row = await session.get(Wallet, wallet.id)
        assert row is not None
        assert row.encrypted_key
        assert row.wrapped_data_key
        return row.encrypted_key, row.wrapped_data_key


async def _store_sealed(
    harness: EngineHarness, wallet: Wallet, sealed: tuple[bytes | None, bytes | None]
) -> None:
    async with unit_of_work(harness.sessionmaker) as session:
        await session.execute(
            update(Wallet)
            .where(Wallet.id == wallet.id)
            .values(encrypted_key=sealed[0], wrapped_data_key=sealed[1])
        )


@asynccontextmanager
async def unreadable(
    harness: EngineHarness, wallet: Wallet, other: Wallet, how: str
) -> AsyncIterator[None]:
    """The wallet's row made undecryptable for the block, then repaired as an operator would
    (its original blobs written back): `corrupt` flips a bit of its ciphertext; `moved` gives
    it `other`'s wrapped data key (authentic, but bound to the other row); `missing` clears
    both blobs of the local wallet."""
    original = await _sealed_columns(harness, wallet)
    if how == "corrupt":
        flipped = bytearray(original[0])
        flipped[20] ^= 1
        await _store_sealed(harness, wallet, (bytes(flipped), original[1]))
    elif how == "missing":
        await _store_sealed(harness, wallet, (None, None))
    else:
        moved = (await _sealed_columns(harness, other))[1]
        await _store_sealed(harness, wallet, (original[0], moved))
    try:
        yield
    finally:
        await _store_sealed(harness, wallet, original)


def _no_key_material(logs: Sequence[Mapping[str, Any]], *secrets: bytes) -> None:
    text = repr(logs)
    for secret in secrets:
        assert secret.hex() not in text
        assert repr(secret) not in text


@pytest.mark.parametrize("how", ["corrupt", "moved", "missing"])
async def test_an_unreadable_key_holds_only_its_lane_and_it_resumes_once_repaired(
    harness: EngineHarness, how: str
) -> None:
    good, broken = await harness.wallet(), await harness.wallet()
    sealed = await _sealed_columns(harness, broken)
    async with unreadable(harness, broken, good, how):
        broken_ids = [await harness.submit(broken, value=str(i + 1)) for i in range(2)]
        good_ids = [await harness.submit(good, value=str(i + 1)) for i in range(2)]
        with structlog.testing.capture_logs() as logs:
            await check_only_its_lane_waits(harness, good, broken, "key_unreadable", good_ids)
        said = [entry for entry in logs if entry["event"] == "lane.key_unreadable"]
        assert len(said) == 1, said  # once, not every round
        assert said[0]["wallet_id"] == str(broken.id)
        _no_key_material(logs, *sealed)
        # what a nonce_gap cleared on this lane gives back (review: it gave None)
        assert harness.engine.state.signers.reason_down(broken.id) == "key_unreadable"
        assert harness.engine.state.signers.reason_down(good.id) is None
    # Repaired in the database: the same engine (no restart) signs the lane again.
    rows = await harness.run_until(broken_ids, has_status(TxStatus.CONFIRMED))
    assert [tx.nonce for tx in rows] == [0, 1]
    assert await paused_reason(harness, broken) is None
    await assert_lane_settled(harness, broken)
    await assert_lane_settled(harness, good)


@pytest.mark.parametrize("how", ["corrupt", "moved"])
async def test_an_unreadable_key_holds_only_its_bumps_and_they_resume_once_repaired(
    fast_stuck_harness: EngineHarness, how: str
) -> None:
    """Both wallets' requests are sent and stuck (nothing mined). A worker that never read the
    broken wallet's key (a restart: a fresh engine) tracks them: the good wallet's request is
    bumped and the broken lane shows key_unreadable; once repaired, its request is bumped too."""
    first, second = sorted(
        [await fast_stuck_harness.wallet(), await fast_stuck_harness.wallet()],
        key=lambda w: w.id,
    )
    # The tracker replaces in wallet id order: the broken wallet's bump first, or second.
    good, broken = (second, first) if how == "corrupt" else (first, second)
    async with mining_stopped(fast_stuck_harness.rpc):
        ids = [await fast_stuck_harness.submit(wallet, value="1") for wallet in (first, second)]
        await fast_stuck_harness.run_until(ids, has_status(TxStatus.SUBMITTED))
        restarted = Engine.start(fast_stuck_harness.engine.ports)
        harness = dataclasses.replace(fast_stuck_harness, engine=restarted)
        try:
            async with unreadable(harness, broken, good, how):
                # stuck after 1 s: the good wallet's request is bumped, the broken one waits
                paused = partial(bumped_while_paused, harness, good, broken, "key_unreadable")
                assert await eventually(paused, timeout_s=30)
                (broken_tx,) = await lane_transactions(harness, broken)
                assert (broken_tx.status, broken_tx.nonce, len(broken_tx.attempts)) == (
                    TxStatus.SUBMITTED,
                    0,
                    1,
                )
                assert await paused_reason(harness, good) is None
            resumed = partial(bumped_while_paused, harness, broken, broken, None)
            assert await eventually(resumed, timeout_s=30)
        finally:
            await restarted.stop()
    harness = fast_stuck_harness
    rows = await harness.run_until(ids, has_status(TxStatus.CONFIRMED), timeout_s=60)
    assert [tx.nonce for tx in rows] == [0, 0]
    for wallet in (good, broken):
        assert await harness.chain_nonce(wallet) == 1
        await assert_lane_settled(harness, wallet)


async def test_a_cancel_of_another_wallet_goes_on_while_a_key_is_unreadable(
    harness: EngineHarness,
) -> None:
    """Both wallets' sent requests are cancelled; the tracker replaces in wallet id order, the
    broken wallet first: the other wallet's cancel is signed and sent all the same (before, the
    broken one's DecryptionFailed ended the round first). Once repaired, its cancel goes too."""
    broken, good = sorted([await harness.wallet(), await harness.wallet()], key=lambda w: w.id)
    async with mining_stopped(harness.rpc):
        ids = [await harness.submit(wallet, value="1") for wallet in (broken, good)]
        await harness.run_until(ids, has_status(TxStatus.SUBMITTED))
        restarted = Engine.start(harness.engine.ports)  # has never read the broken key
        fresh = dataclasses.replace(harness, engine=restarted)
        try:
            async with unreadable(fresh, broken, good, "corrupt"):
                async with unit_of_work(harness.sessionmaker) as session:
                    for tx_id in ids:
                        await txs.cancel(session, tx_id, api_key_id=None, is_admin=True)

                async def good_cancel_signed() -> bool:
                    await run_round(restarted, ANVIL_CHAIN_ID)
                    (good_tx,) = await lane_transactions(fresh, good)
                    kinds = [attempt.kind for attempt in good_tx.attempts]
                    return (
                        AttemptKind.CANCEL in kinds
                        and await paused_reason(fresh, broken) == "key_unreadable"
                    )

                assert await eventually(good_cancel_signed, timeout_s=30)
                (broken_tx,) = await lane_transactions(fresh, broken)
                assert [a.kind for a in broken_tx.attempts] == [AttemptKind.ORIGINAL]

            async def broken_cancel_signed() -> bool:
                await run_round(restarted, ANVIL_CHAIN_ID)
                (broken_tx,) = await lane_transactions(fresh, broken)
                kinds = [attempt.kind for attempt in broken_tx.attempts]
                return AttemptKind.CANCEL in kinds and await paused_reason(fresh, broken) is None

            assert await eventually(broken_cancel_signed, timeout_s=30)
        finally:
            await restarted.stop()
    rows = await harness.run_until_final(ids, timeout_s=60)
    assert [tx.status for tx in rows] == [TxStatus.CANCELLED] * 2
    for wallet in (good, broken):
        await assert_lane_settled(harness, wallet)


async def test_the_tracker_leaves_an_unchanged_unreadable_key_alone(
    eager_harness: EngineHarness,
) -> None:
    """A stuck request of a wallet whose key cannot be decrypted: each tracking pass wants its
    bump. Once it failed, the tracker tries it again only when the wallet's row changes, as
    drains do (the old code tried it every pass: a fee read, a DB transaction and a decrypt,
    its 10th failure logged again); repaired, it is bumped at the next pass."""
    broken, other = await eager_harness.wallet(), await eager_harness.wallet()
    async with mining_stopped(eager_harness.rpc):
        tx_id = await eager_harness.submit(broken, value="1")
        await eager_harness.run_until([tx_id], has_status(TxStatus.SUBMITTED))
        restarted = Engine.start(eager_harness.engine.ports)  # has never read the key
        harness = dataclasses.replace(eager_harness, engine=restarted)
        chain = await chain_config(harness)
        (tx,) = await lane_transactions(harness, broken)
        signed = len(tx.attempts)  # its first pass may have been bumped already
        try:
            async with unreadable(harness, broken, other, "corrupt"):
                with structlog.testing.capture_logs() as logs:

                    async def shown() -> bool:
                        await track_chain(restarted, chain)
                        return await paused_reason(harness, broken) == "key_unreadable"

                    await eventually(shown, timeout_s=10, interval_s=0.05)
                    for _ in range(12):
                        await track_chain(restarted, chain)
                said = [entry for entry in logs if entry["event"] == "tracker.key_unreadable"]
                assert len(said) == 1, said  # tried once: the 10th try would log again
                (tx,) = await lane_transactions(harness, broken)
                assert len(tx.attempts) == signed

            async def bumped() -> bool:
                await track_chain(restarted, chain)
                (tx,) = await lane_transactions(harness, broken)
                return len(tx.attempts) > signed

            await eventually(bumped, timeout_s=10, interval_s=0.05, what="the repaired bump")
            assert await paused_reason(harness, broken) is None
        finally:
            await restarted.stop()


async def test_an_idle_lane_stops_showing_key_unreadable_once_repaired(
    harness: EngineHarness,
) -> None:
    """Its only request cancelled, the lane has nothing to sign: a round decrypts the repaired
    key once and clears the reason, and a fresh worker's first round clears one shown before
    it started (review: only a signature cleared it, so on an idle lane the page alert,
    chainflow_lanes_paused and signer_healthy: false stayed after the repair)."""
    good, broken = await harness.wallet(), await harness.wallet()

    async def reason_after_round(engine: Engine) -> str | None:
        await run_round(engine, ANVIL_CHAIN_ID)
        return await paused_reason(harness, broken)

    async with unreadable(harness, broken, good, "corrupt"):
        tx_id = await harness.submit(broken, value="1")

        async def shown() -> bool:
            return await reason_after_round(harness.engine) == "key_unreadable"

        await eventually(shown, timeout_s=30, what="key_unreadable shown")
        async with unit_of_work(harness.sessionmaker) as session:
            await txs.cancel(session, tx_id, api_key_id=None, is_admin=True)
        assert await reason_after_round(harness.engine) == "key_unreadable"  # still broken

    async def cleared(engine: Engine) -> bool:
        return await reason_after_round(engine) is None

    await eventually(partial(cleared, harness.engine), timeout_s=10, what="reason cleared")
    async with unit_of_work(harness.sessionmaker) as session:  # shown by a worker gone since
        await session.execute(
            update(WalletChain)
            .where(WalletChain.wallet_id == broken.id)
            .values(paused_reason="key_unreadable")
        )
    restarted = Engine.start(harness.engine.ports)
    try:
        await eventually(partial(cleared, restarted), timeout_s=10, what="cleared at start")
    finally:
        await restarted.stop()
