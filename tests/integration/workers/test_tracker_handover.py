"""The tracker lease follows the drains (docs/performance.md item 34): a worker that tracks a
chain while another process drains its lanes, and holds none itself, gives the lease up, and
the drainer takes it at its next round. Tracking where the chain is drained costs less CPU."""

import dataclasses
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.core.clock import utcnow
from chainflow.core.types import TxId
from chainflow.domain.chains.models import Chain
from chainflow.domain.transactions.track.judge import TrackerMemory
from chainflow.domain.wallets.models import WalletChain
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.signing.keystore import MasterKey
from chainflow.workers.engine import Engine
from chainflow.workers.main import run_round
from tests.support.chains import ANVIL_CHAIN_ID
from tests.support.engine import EngineHarness, open_engine_harness


@asynccontextmanager
async def two_workers(
    sessionmaker: async_sessionmaker[AsyncSession], anvil_url: str, master_key: MasterKey
) -> AsyncIterator[tuple[EngineHarness, Engine, Engine]]:
    """A tracker that holds the chain's lease and drains nothing, and a drainer that holds
    a lane with a request it sent."""
    async with open_engine_harness(sessionmaker, anvil_url, master_key) as harness:
        tracker = harness.engine
        drainer = Engine.start(dataclasses.replace(tracker.ports, owner="drainer"))
        try:
            wallet = await harness.wallet()
            assert (await run_round(tracker, ANVIL_CHAIN_ID)).tracking  # nothing queued yet
            await harness.submit(wallet, value="1")
            done = await run_round(drainer, ANVIL_CHAIN_ID)
            assert done.signed == 1
            assert not done.tracking
            yield harness, tracker, drainer
        finally:
            await drainer.stop()


async def _tracker_owner(sessionmaker: async_sessionmaker[AsyncSession]) -> str | None:
    async with unit_of_work(sessionmaker) as session:
        owner: str | None = await session.scalar(
            select(Chain.tracker_owner).where(Chain.chain_id == ANVIL_CHAIN_ID)
        )
        return owner


async def test_the_tracker_lease_moves_to_the_process_that_drains(
    sessionmaker: async_sessionmaker[AsyncSession], anvil_url: str, master_key: MasterKey
) -> None:
    async with two_workers(sessionmaker, anvil_url, master_key) as (_, tracker, drainer):
        tracker.hear(ANVIL_CHAIN_ID)  # the drainer's signal after its send
        done = await run_round(tracker, ANVIL_CHAIN_ID)
        assert done.tracked == 1  # it tracked this round, then gave the lease up
        assert not done.tracking
        assert await _tracker_owner(sessionmaker) is None
        # Its next round leaves the free lease to the drainer instead of taking it back.
        assert not (await run_round(tracker, ANVIL_CHAIN_ID)).tracking
        assert await _tracker_owner(sessionmaker) is None
        assert (await run_round(drainer, ANVIL_CHAIN_ID)).tracking
        assert await _tracker_owner(sessionmaker) == "drainer"
        # The drainer holds its lane: another worker's signal does not make it give the lease up.
        drainer.hear(ANVIL_CHAIN_ID)
        assert (await run_round(drainer, ANVIL_CHAIN_ID)).tracking
        assert not (await run_round(tracker, ANVIL_CHAIN_ID)).tracking


async def test_the_lease_stays_without_a_live_drainer_elsewhere(
    sessionmaker: async_sessionmaker[AsyncSession], anvil_url: str, master_key: MasterKey
) -> None:
    async with two_workers(sessionmaker, anvil_url, master_key) as (_, tracker, _drainer):
        # No signal heard: nothing says another process drains, so nothing is asked.
        assert (await run_round(tracker, ANVIL_CHAIN_ID)).tracking
        # A signal heard, but the drainer's lane lease ran out (it died): the lease stays.
        async with unit_of_work(sessionmaker) as session:
            await session.execute(
                update(WalletChain)
                .where(WalletChain.chain_id == ANVIL_CHAIN_ID)
                .values(lease_expires_at=utcnow() - timedelta(seconds=1))
            )
        tracker.hear(ANVIL_CHAIN_ID)
        assert (await run_round(tracker, ANVIL_CHAIN_ID)).tracking
        assert await _tracker_owner(sessionmaker) == tracker.ports.owner


async def test_the_tracker_memory_is_per_chain_and_dropped_with_the_lease(
    sessionmaker: async_sessionmaker[AsyncSession], anvil_url: str, master_key: MasterKey
) -> None:
    # A foreign nonce's first sight starts its grace period (track/judge.py): one chain's
    # pass must not wipe another chain's sights (one memory per process wiped them, so in a
    # worker tracking two chains the verdict never came), and a sight from before a spell
    # in which another process tracked the chain must not count when the lease comes back
    # (review).
    async with two_workers(sessionmaker, anvil_url, master_key) as (_, tracker, drainer):
        other_chain = TrackerMemory(foreign_since={TxId(uuid.uuid4()): 1.0})
        tracker.state.tracking[ANVIL_CHAIN_ID + 1] = other_chain
        assert (await run_round(tracker, ANVIL_CHAIN_ID)).tracking  # no signal: it keeps it
        assert tracker.state.tracking[ANVIL_CHAIN_ID + 1] is other_chain
        assert len(other_chain.foreign_since) == 1
        assert ANVIL_CHAIN_ID in tracker.state.tracking
        tracker.hear(ANVIL_CHAIN_ID)
        assert not (await run_round(tracker, ANVIL_CHAIN_ID)).tracking  # handed over
        assert ANVIL_CHAIN_ID not in tracker.state.tracking
        assert (await run_round(drainer, ANVIL_CHAIN_ID)).tracking
