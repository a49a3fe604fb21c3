"""A round's drains in steps (issue 17, batch path): a round of a process that does not track
the chain lets each of its lanes go on to a next window in the same drain, as a round's only
lane does; a round that may track takes one window a lane (docs/performance.md items 37, 53)."""

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.core.clock import utcnow
from chainflow.domain.chains.models import Chain
from chainflow.domain.transactions.state import TxStatus
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.signing.keystore import MasterKey
from chainflow.workers.main import run_round
from tests.support.chains import ANVIL_CHAIN_ID
from tests.support.engine import TEST_CONFIG, EngineHarness, has_status, open_engine_harness

WINDOWS_OF_3 = replace(TEST_CONFIG, max_in_flight_per_lane=3, batch_size=3)


async def _tracked_by(harness: EngineHarness, owner: str, *, for_s: float = 30) -> None:
    """The chain's tracker lease as another process holds it, for `for_s` more."""
    async with unit_of_work(harness.sessionmaker) as session:
        await session.execute(
            update(Chain)
            .where(Chain.chain_id == ANVIL_CHAIN_ID)
            .values(tracker_owner=owner, tracker_lease_until=utcnow() + timedelta(seconds=for_s))
        )


@pytest.mark.parametrize(("tracked_elsewhere", "signed"), [(True, 10), (False, 6)])
async def test_a_round_drains_its_lanes_in_steps_only_where_another_process_tracks(
    sessionmaker: async_sessionmaker[AsyncSession],
    anvil_url: str,
    master_key: MasterKey,
    tracked_elsewhere: bool,
    signed: int,
) -> None:
    async with open_engine_harness(
        sessionmaker, anvil_url, master_key, config=WINDOWS_OF_3
    ) as harness:
        wallets = [await harness.wallet() for _ in range(2)]
        ids = [await harness.submit(w, value=str(i + 1)) for i in range(5) for w in wallets]
        if tracked_elsewhere:
            await _tracked_by(harness, "other-worker")
        done = await run_round(harness.engine, ANVIL_CHAIN_ID)
        assert (done.signed, done.tracking) == (signed, not tracked_elsewhere)
        if tracked_elsewhere:  # that process is gone: its lease ran out, this one tracks
            await _tracked_by(harness, "other-worker", for_s=-1)
        rows = await harness.run_until(ids, has_status(TxStatus.CONFIRMED))
        for wallet in wallets:
            nonces = sorted(tx.nonce or 0 for tx in rows if tx.wallet_id == wallet.id)
            assert nonces == list(range(5))
            assert await harness.chain_nonce(wallet) == 5
