"""A chain nonce that falls below every nonce a lane has in flight (a reorg deeper than the
chain's `confirmations`, a node reset, anvil_setNonce): nothing we hold can fill the nonces
between, so the requests cannot be mined. The tracker shows it on the lane (`paused_reason`
`nonce_gap`) and signs no bump for them (no fee escalation for a transaction that cannot be
mined); once the chain's nonce is back at the lane's lowest in-flight nonce, the reason clears
and bumping resumes (audit of the transaction lifecycle, 2026-12-07, defect 1).

The gap is made as s_setnonce.py made it: the lane's requests sent at nonces 3..5, then the
account's nonce set back to 1. Passes are driven one by one (track_chain), never by sleeping.
"""

import dataclasses
from dataclasses import dataclass

import pytest

from chainflow.core.types import TxId
from chainflow.domain.transactions.models import Transaction
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.wallets.models import Wallet
from chainflow.workers.track import track_chain
from tests.support.chaos import chain_config, mining_stopped, paused_reason
from tests.support.engine import TEST_CONFIG, EngineHarness, harness_fixture, has_status
from tests.support.polling import eventually

# Every pass finds the lowest nonce stuck (time rule 0.05 s after its send): on the old code
# each pass over a gapped lane signed another bump.
EAGER = dataclasses.replace(TEST_CONFIG, stuck_after_s=0.05, stuck_after_blocks=1)
LOWEST = 3  # the lane's first nonce in flight
BEHIND = 1  # the chain's nonce after it was moved back

eager_harness = harness_fixture(own_anvil=True, config=EAGER)


async def sent_above_a_gap(harness: EngineHarness) -> tuple[Wallet, list[TxId]]:
    """Three requests sent at nonces 3..5, then the wallet's chain nonce set back to 1 (the
    test's own anvil)."""
    wallet = await harness.wallet()
    await harness.rpc.call("anvil_setNonce", [wallet.address, hex(LOWEST)])
    async with mining_stopped(harness.rpc):
        ids = [await harness.submit(wallet, value=str(i + 1)) for i in range(3)]
        rows = await harness.run_until(ids, has_status(TxStatus.SUBMITTED))
        assert [tx.nonce for tx in rows] == [LOWEST, LOWEST + 1, LOWEST + 2]
        # Off the pool first (as a deep reorg leaves it): a pool still holding them as ready
        # mined them when automine came back on. The tracker sends them again, same bytes.
        await harness.rpc.call("anvil_dropAllTransactions")
        await harness.rpc.call("anvil_setNonce", [wallet.address, hex(BEHIND)])
    for tag in ("latest", "pending"):
        assert await harness.chain_nonce(wallet, tag) == BEHIND
    return wallet, ids


async def attempts_of(harness: EngineHarness, ids: list[TxId]) -> int:
    return sum([len((await harness.get(tx_id)).attempts) for tx_id in ids])


async def track_until_shown(harness: EngineHarness, wallet: Wallet, reason: str | None) -> None:
    """Tracking passes, one after another, until the lane shows `reason`."""
    chain = await chain_config(harness)

    async def shown() -> bool:
        await track_chain(harness.engine, chain)
        return await paused_reason(harness, wallet) == reason

    await eventually(shown, timeout_s=10, interval_s=0.05, what=f"paused_reason {reason}")


@dataclass
class Gapped:
    harness: EngineHarness
    wallet: Wallet
    ids: list[TxId]


@pytest.fixture
async def gapped(eager_harness: EngineHarness) -> Gapped:
    """A lane above a gap, shown as `nonce_gap` (on the old code it never was: each pass over
    it signed another bump instead)."""
    wallet, ids = await sent_above_a_gap(eager_harness)
    await track_until_shown(eager_harness, wallet, "nonce_gap")
    return Gapped(eager_harness, wallet, ids)


class TestNonceGap:
    async def test_a_lane_below_its_gap_is_shown_and_never_bumped(self, gapped: Gapped) -> None:
        harness, wallet, ids = gapped.harness, gapped.wallet, gapped.ids
        signed = await attempts_of(harness, ids)
        chain = await chain_config(harness)
        for _ in range(12):
            await track_chain(harness.engine, chain)
        assert await attempts_of(harness, ids) == signed, "a bump was signed for a gapped lane"
        assert await paused_reason(harness, wallet) == "nonce_gap"
        rows = [await harness.get(tx_id) for tx_id in ids]
        assert all(tx.status is TxStatus.SUBMITTED for tx in rows)

    async def test_the_gap_filled_clears_the_reason_and_the_requests_confirm(
        self, gapped: Gapped
    ) -> None:
        harness, wallet, ids = gapped.harness, gapped.wallet, gapped.ids
        # The operator (or the chain undoing its reorg) brings the nonce back to the lane's.
        await harness.rpc.call("anvil_setNonce", [wallet.address, hex(LOWEST)])
        await track_until_shown(harness, wallet, None)
        rows: list[Transaction] = await harness.run_until_final(ids)
        assert [tx.status for tx in rows] == [TxStatus.CONFIRMED] * 3
        assert [tx.nonce for tx in rows] == [LOWEST, LOWEST + 1, LOWEST + 2]
        assert await harness.chain_nonce(wallet) == LOWEST + 3
        assert await paused_reason(harness, wallet) is None
