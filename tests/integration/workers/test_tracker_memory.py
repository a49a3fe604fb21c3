"""What a tracker remembers of a chain between passes (track/judge.TrackerMemory: a foreign
nonce's first sight, a capped attempt) is its chain's alone and lives only while the process
holds the chain's tracker lease (review of issue 17's session)."""

import dataclasses
import uuid
from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.core.clock import utcnow
from chainflow.core.types import TxId
from chainflow.domain.chains.models import Chain
from chainflow.domain.transactions.track.judge import TrackerMemory
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.signing.keystore import MasterKey
from chainflow.workers.engine import Engine
from chainflow.workers.main import run_round
from tests.support.chains import ANVIL_CHAIN_ID
from tests.support.engine import open_engine_harness


async def test_the_tracker_memory_is_per_chain_and_dropped_with_the_lease(
    sessionmaker: async_sessionmaker[AsyncSession], anvil_url: str, master_key: MasterKey
) -> None:
    # A foreign nonce's first sight starts its grace period (track/judge.py): one chain's
    # pass must not wipe another chain's sights (one memory per process was wiped by every
    # pass of another chain, so in a worker tracking two chains the verdict never came),
    # and a sight from before a spell in which another process tracked the chain must not
    # count when the lease comes back (a request failed as "nonce taken" on one read).
    async with open_engine_harness(sessionmaker, anvil_url, master_key) as harness:
        tracker = harness.engine
        other = Engine.start(dataclasses.replace(tracker.ports, owner="another-worker"))
        try:
            wallet = await harness.wallet()
            assert (await run_round(tracker, ANVIL_CHAIN_ID)).tracking  # nothing queued yet
            await harness.submit(wallet, value="1")
            assert (await run_round(other, ANVIL_CHAIN_ID)).signed == 1  # in flight
            other_chain = TrackerMemory(foreign_since={TxId(uuid.uuid4()): 1.0})
            tracker.state.tracking[ANVIL_CHAIN_ID + 1] = other_chain
            done = await run_round(tracker, ANVIL_CHAIN_ID)
            assert done.tracking
            assert done.tracked == 1
            assert ANVIL_CHAIN_ID in tracker.state.tracking
            assert tracker.state.tracking[ANVIL_CHAIN_ID + 1] is other_chain
            assert len(other_chain.foreign_since) == 1
            async with unit_of_work(sessionmaker) as session:  # the tracker stalled a while
                await session.execute(
                    update(Chain)
                    .where(Chain.chain_id == ANVIL_CHAIN_ID)
                    .values(tracker_lease_until=utcnow() - timedelta(seconds=1))
                )
            assert (await run_round(other, ANVIL_CHAIN_ID)).tracking
            assert not (await run_round(tracker, ANVIL_CHAIN_ID)).tracking
            assert ANVIL_CHAIN_ID not in tracker.state.tracking
            assert tracker.state.tracking[ANVIL_CHAIN_ID + 1] is other_chain
        finally:
            await other.stop()
