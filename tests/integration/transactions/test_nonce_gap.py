"""A chain nonce that falls below every nonce a lane has in flight (a reorg deeper than the
chain's `confirmations`, a node reset, anvil_setNonce): nothing we hold can fill the nonces
between, so the requests cannot be mined. The tracker shows it on the lane (`paused_reason`
`nonce_gap`) and signs no bump for them (no fee escalation for a transaction that cannot be
mined); once the chain's nonce is back at the lane's lowest in-flight nonce, the reason clears
and bumping resumes (audit of the transaction lifecycle, 2026-12-07, defect 1).

The gap is made as s_setnonce.py made it: the lane's requests sent at nonces 3..5, then the
account's nonce set back to 1. Passes are driven one by one (track_chain), never by sleeping;
the tracker memory's clock is the test's, moved past GAP_HOLD_S (the time a gap must be seen
before it is shown) instead of waiting for it.
"""

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from chainflow.core.clock import utcnow
from chainflow.core.types import TxId, WalletId
from chainflow.domain.transactions import repository
from chainflow.domain.transactions import service as txs
from chainflow.domain.transactions.models import Transaction
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.transactions.track.gaps import GAP_HOLD_S, GapMemory
from chainflow.domain.transactions.track.judge import TrackerMemory
from chainflow.domain.wallets import service as wallets
from chainflow.domain.wallets.models import NONCE_GAP, Wallet, WalletChain
from chainflow.infra.db.uow import unit_of_work
from chainflow.workers.main import run_round
from chainflow.workers.track import track_chain
from tests.support.chains import ANVIL_CHAIN_ID
from tests.support.chaos import chain_config, mining_stopped, paused_reason
from tests.support.engine import TEST_CONFIG, EngineHarness, harness_fixture, has_status
from tests.support.polling import eventually

# Every pass finds the lowest nonce stuck (time rule 0.05 s after its send): on the old code
# each pass over a gapped lane signed another bump.
EAGER = dataclasses.replace(TEST_CONFIG, stuck_after_s=0.05, stuck_after_blocks=1)
LOWEST = 3  # the lane's first nonce in flight
BEHIND = 1  # the chain's nonce after it was moved back

eager_harness = harness_fixture(own_anvil=True, config=EAGER)
# A tracker page of 2 requests: another lane's 2 in flight fill it.
short_page_harness = harness_fixture(
    own_anvil=True, config=dataclasses.replace(TEST_CONFIG, track_limit=2)
)
patient_harness = harness_fixture(own_anvil=True, config=TEST_CONFIG)  # bumps not soon due


class Clock:
    """The tracker memory's clock (GapMemory.clock), moved by the test."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def clocked(harness: EngineHarness) -> Clock:
    """The chain's tracker memory, new, on a clock of the test's."""
    clock = Clock()
    harness.engine.state.tracking[ANVIL_CHAIN_ID] = TrackerMemory(gaps=GapMemory(clock=clock))
    return clock


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


async def track_until_shown(
    harness: EngineHarness, wallet: Wallet, reason: str | None, clock: Clock
) -> None:
    """Tracking passes, one after another, GAP_HOLD_S apart, until the lane shows `reason`."""
    chain = await chain_config(harness)

    async def shown() -> bool:
        clock.t += GAP_HOLD_S
        await track_chain(harness.engine, chain)
        return await paused_reason(harness, wallet) == reason

    await eventually(shown, timeout_s=10, interval_s=0.05, what=f"paused_reason {reason}")


@dataclass
class Gapped:
    harness: EngineHarness
    wallet: Wallet
    ids: list[TxId]
    clock: Clock


@pytest.fixture
async def gapped(eager_harness: EngineHarness) -> Gapped:
    """A lane above a gap, shown as `nonce_gap` (on the old code it never was: each pass over
    it signed another bump instead)."""
    wallet, ids = await sent_above_a_gap(eager_harness)
    clock = clocked(eager_harness)
    await track_until_shown(eager_harness, wallet, NONCE_GAP, clock)
    return Gapped(eager_harness, wallet, ids, clock)


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
        await track_until_shown(harness, wallet, None, gapped.clock)
        rows: list[Transaction] = await harness.run_until_final(ids)
        assert [tx.status for tx in rows] == [TxStatus.CONFIRMED] * 3
        assert [tx.nonce for tx in rows] == [LOWEST, LOWEST + 1, LOWEST + 2]
        assert await harness.chain_nonce(wallet) == LOWEST + 3
        assert await paused_reason(harness, wallet) is None

    async def test_a_gap_seen_for_less_than_its_hold_time_is_not_shown(
        self, eager_harness: EngineHarness
    ) -> None:
        """Passes run after each drain's send, milliseconds apart: a lagging replica or a
        fallback endpoint a block behind, read on two of them, is no gap (the old code showed
        it at the second pass)."""
        harness = eager_harness
        wallet, _ = await sent_above_a_gap(harness)
        clock = clocked(harness)
        chain = await chain_config(harness)
        for _ in range(6):
            clock.t += GAP_HOLD_S / 10
            await track_chain(harness.engine, chain)
        assert await paused_reason(harness, wallet) is None
        clock.t += GAP_HOLD_S / 2
        await track_chain(harness.engine, chain)
        assert await paused_reason(harness, wallet) == NONCE_GAP

    async def test_a_signer_still_down_shows_its_reason_again_when_the_gap_clears(
        self, patient_harness: EngineHarness
    ) -> None:
        """The gap was shown over the lane's signer reason, and the drains leave `nonce_gap`
        alone: cleared to nothing, a lane whose signer is still down showed no reason for the
        rest of the outage. Its fault is noted in the engine's signers as a drain notes a bad
        signature: its back-off (1 s) keeps the pass from signing for it, so no bump's
        signature clears the reason again before it is read."""
        harness = patient_harness
        wallet, _ = await sent_above_a_gap(harness)
        clock = clocked(harness)
        await track_until_shown(harness, wallet, NONCE_GAP, clock)
        await harness.rpc.call("anvil_setNonce", [wallet.address, hex(LOWEST)])
        clock.t += GAP_HOLD_S
        harness.engine.state.signers.note_unavailable(wallet.id, bad=True)
        await track_chain(harness.engine, await chain_config(harness))
        assert await paused_reason(harness, wallet) == "bad_signature"

    async def test_signing_paths_leave_the_gap_shown(self, gapped: Gapped) -> None:
        """The reason written by bumps, cancels and fillers (set_paused_reason) never
        replaces `nonce_gap`: the tracker alone clears it."""
        harness, wallet = gapped.harness, gapped.wallet
        for reason in ("signer_unavailable", None):
            async with unit_of_work(harness.sessionmaker) as session:
                await wallets.set_paused_reason(session, wallet.id, ANVIL_CHAIN_ID, reason)
            assert await paused_reason(harness, wallet) == NONCE_GAP


class TestQueuedBelowAGap:
    """Requests queued on a lane shown `nonce_gap`: signed, they could not be mined until the
    gap is mended, and could no longer be cancelled before signing (the old code signed them
    up to the in-flight limit)."""

    async def test_they_stay_queued_and_cancellable(self, gapped: Gapped) -> None:
        harness, wallet = gapped.harness, gapped.wallet
        kept = await harness.submit(wallet, value="8")
        dropped = await harness.submit(wallet, value="9")
        for _ in range(5):
            await run_round(harness.engine, ANVIL_CHAIN_ID)
        assert [(await harness.get(i)).status for i in (kept, dropped)] == [TxStatus.QUEUED] * 2
        assert (await harness.get(kept)).nonce is None
        async with unit_of_work(harness.sessionmaker) as session:
            await txs.cancel(session, dropped, api_key_id=None, is_admin=True)
        assert (await harness.get(dropped)).status is TxStatus.CANCELLED
        assert await paused_reason(harness, wallet) == NONCE_GAP

    async def test_they_expire_when_their_valid_until_passes(self, gapped: Gapped) -> None:
        harness, wallet = gapped.harness, gapped.wallet
        past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
        late = await harness.submit(wallet, value="7", valid_until=past)
        (row,) = await harness.run_until([late], has_status(TxStatus.EXPIRED))
        assert row.nonce is None

    async def test_a_round_offers_the_lane_only_for_those_past_valid_until(
        self, gapped: Gapped
    ) -> None:
        """A drain can only expire them: a round leaves the lane out until one is past its
        valid_until, then counts only those (review: re-planned every round to sign nothing,
        a write transaction and 2 eth_getTransactionCount calls each, for as long as the gap
        waits for an operator)."""
        harness, wallet = gapped.harness, gapped.wallet

        async def offered() -> dict[WalletId, int]:
            async with unit_of_work(harness.sessionmaker) as session:
                return await repository.lanes_with_queued(
                    session, ANVIL_CHAIN_ID, owner=harness.engine.ports.owner, now=utcnow()
                )

        await harness.submit(wallet, value="8")
        assert wallet.id not in await offered()
        past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
        await harness.submit(wallet, value="7", valid_until=past)
        assert (await offered()).get(wallet.id) == 1

    async def test_they_are_signed_once_the_gap_is_mended(self, gapped: Gapped) -> None:
        harness, wallet, ids = gapped.harness, gapped.wallet, gapped.ids
        above = await harness.submit(wallet, value="9")
        await run_round(harness.engine, ANVIL_CHAIN_ID)
        assert (await harness.get(above)).status is TxStatus.QUEUED
        await harness.rpc.call("anvil_setNonce", [wallet.address, hex(LOWEST)])
        await track_until_shown(harness, wallet, None, gapped.clock)
        rows = await harness.run_until_final([*ids, above])
        assert [tx.status for tx in rows] == [TxStatus.CONFIRMED] * 4
        assert [tx.nonce for tx in rows] == [LOWEST, LOWEST + 1, LOWEST + 2, LOWEST + 3]


async def show(harness: EngineHarness, wallet: Wallet, reason: str | None) -> None:
    """Write the lane's paused_reason as another process would."""
    async with unit_of_work(harness.sessionmaker) as session:
        lane = await session.get(WalletChain, (wallet.id, ANVIL_CHAIN_ID))
        assert lane is not None
        lane.paused_reason = reason


class TestAnotherHoldersFlag:
    """`nonce_gap` written by a process that held the chain's tracker lease before this one."""

    async def test_a_new_holder_clears_a_flag_found_on_a_lane_not_gapped(
        self, eager_harness: EngineHarness
    ) -> None:
        harness = eager_harness
        wallet = await harness.wallet()
        await show(harness, wallet, NONCE_GAP)
        clocked(harness)  # a new memory: this process has just taken the lease
        await track_chain(harness.engine, await chain_config(harness))
        assert await paused_reason(harness, wallet) is None

    async def test_a_flag_written_after_this_holder_read_the_lanes_is_cleared(
        self, eager_harness: EngineHarness
    ) -> None:
        """The old holder's write lands after the new holder read the lanes: a later pass
        (GAP_HOLD_S on) reads them again and clears it (the old code never did)."""
        harness = eager_harness
        wallet = await harness.wallet()
        clock = clocked(harness)
        chain = await chain_config(harness)
        await track_chain(harness.engine, chain)  # reads the lanes: none shows a gap
        await show(harness, wallet, NONCE_GAP)
        await track_chain(harness.engine, chain)
        assert await paused_reason(harness, wallet) == NONCE_GAP  # read again only later
        clock.t += GAP_HOLD_S
        await track_chain(harness.engine, chain)
        assert await paused_reason(harness, wallet) is None

    async def test_a_flag_on_a_lane_off_a_cut_page_with_nothing_in_flight_is_cleared(
        self, short_page_harness: EngineHarness
    ) -> None:
        """The tracker's page (`track_limit`, 5,000 by default) is full of another lane's
        requests: the flagged lane, with nothing in flight, is on no page, and the old code
        never cleared it (its queued requests then waited for ever)."""
        harness = short_page_harness
        flagged, busy = await harness.wallet(), await harness.wallet()
        chain = await chain_config(harness)
        async with mining_stopped(harness.rpc):
            ids = [await harness.submit(busy, value=str(i + 1)) for i in range(2)]
            await harness.run_until(ids, has_status(TxStatus.SUBMITTED))
            await show(harness, flagged, NONCE_GAP)
            clocked(harness)  # a new memory: it reads the flag at its first pass
            await track_chain(harness.engine, chain)
            assert await paused_reason(harness, flagged) is None
