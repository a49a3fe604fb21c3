"""A signature that does not verify (ecdsa.BadSignature: a local key's check failed, an HSM or KMS
answered garbage) is its lane's problem only: the lane waits with `paused_reason`
"bad_signature", nothing stored, no nonce taken, and the other lanes drained or bumped in the
same round go on; once signing works again the lane resumes with no nonce gap. The same for
the filler of a released nonce."""

from functools import partial

import pytest

from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.wallets.models import Wallet
from chainflow.infra.signing.local import LocalSigner
from chainflow.workers.drain import drain_lanes
from tests.support.chaos import (
    assert_lane_settled,
    bumped_while_paused,
    chain_config,
    check_a_gap_waits_for_its_filler,
    check_only_its_lane_waits,
    lane_next_nonce,
    lane_transactions,
    mining_stopped,
    paused_reason,
)
from tests.support.engine import EngineHarness, has_status
from tests.support.faulty_signer import bad_signatures
from tests.support.polling import eventually


async def local_signer(harness: EngineHarness, wallet: Wallet) -> LocalSigner:
    """The signer the engine keeps for the wallet (the one its drains and bumps use)."""
    signer = await harness.engine.state.signers.of(wallet)
    assert isinstance(signer, LocalSigner)
    return signer


async def test_a_bad_signature_holds_only_its_lane_of_the_drain_and_it_resumes_without_a_gap(
    harness: EngineHarness,
) -> None:
    good, bad = await harness.wallet(), await harness.wallet()
    faulty = await local_signer(harness, bad)
    chain = await chain_config(harness)
    with bad_signatures(faulty):
        bad_ids = [await harness.submit(bad, value=str(i + 1)) for i in range(2)]
        good_ids = [await harness.submit(good, value=str(i + 1)) for i in range(2)]
        # One drain of both lanes: the good one signs (before: BadSignature failed the round).
        assert await drain_lanes(harness.engine, chain, [bad.id, good.id]) == 2
        await check_only_its_lane_waits(harness, good, bad, "bad_signature", good_ids)
    rows = await harness.run_until(bad_ids, has_status(TxStatus.CONFIRMED))
    assert [tx.nonce for tx in rows] == [0, 1]
    assert await paused_reason(harness, bad) is None
    assert await lane_next_nonce(harness, bad) == 2
    await assert_lane_settled(harness, bad)
    await assert_lane_settled(harness, good)


@pytest.mark.parametrize("faulty_first", [True, False])
async def test_a_bad_signature_of_a_bump_holds_only_its_lane_and_it_resumes(
    fast_stuck_harness: EngineHarness, faulty_first: bool
) -> None:
    """Both wallets' requests are stuck (nothing mined); the tracker bumps both in one round.
    The faulty wallet's bump is not stored and its lane shows bad_signature; the other's bump
    is stored and sent. Before, the BadSignature failed the chain's whole tracking round."""
    harness = fast_stuck_harness
    # The tracker replaces in wallet id order: the faulty wallet's bump first, or second.
    first, second = sorted([await harness.wallet(), await harness.wallet()], key=lambda w: w.id)
    good, bad = (second, first) if faulty_first else (first, second)
    faulty = await local_signer(harness, bad)
    async with mining_stopped(harness.rpc):
        ids = [await harness.submit(wallet, value="1") for wallet in (first, second)]
        await harness.run_until(ids, has_status(TxStatus.SUBMITTED))
        with bad_signatures(faulty):
            # stuck after 1 s: bumps
            paused = partial(bumped_while_paused, harness, good, bad, "bad_signature")
            assert await eventually(paused, timeout_s=30)
            (bad_tx,) = await lane_transactions(harness, bad)
            assert (bad_tx.status, bad_tx.nonce, len(bad_tx.attempts)) == (
                TxStatus.SUBMITTED,
                0,
                1,
            )
            assert await paused_reason(harness, good) is None
        resumed = partial(bumped_while_paused, harness, bad, bad, None)
        assert await eventually(resumed, timeout_s=30)
    rows = await harness.run_until(ids, has_status(TxStatus.CONFIRMED), timeout_s=60)
    assert [tx.nonce for tx in rows] == [0, 0]
    for wallet in (good, bad):
        assert await harness.chain_nonce(wallet) == 1
        await assert_lane_settled(harness, wallet)


async def test_a_nonce_gap_waits_for_a_good_signature_and_is_filled_when_there_is_one(
    harness: EngineHarness,
) -> None:
    """A filler signed by a faulty key: the lane shows bad_signature until it signs well."""
    wallet = await harness.wallet()
    faulty = await local_signer(harness, wallet)
    await check_a_gap_waits_for_its_filler(
        harness, wallet, bad_signatures(faulty), reason="bad_signature"
    )
