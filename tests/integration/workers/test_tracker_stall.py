"""A tracking pass stalled for longer than its tracker lease (the process SIGSTOPped, swapped
out, its VM paused) must not go on bumping and cancelling beside the lease's next holder.
Found with a distributed deployment: a worker stopped mid-pass for 40 s while another took
the lease and bumped; once continued, it signed and sent five more bumps and cancels of the
same requests within 2 s, on what it had read before the stall."""

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import update

from chainflow.core.clock import utcnow
from chainflow.core.types import TxId
from chainflow.domain.chains.models import Chain
from chainflow.domain.transactions.config import ChainConfig
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.transactions.track import observe
from chainflow.domain.wallets.models import Wallet
from chainflow.infra.db.uow import unit_of_work
from chainflow.workers import track, tracking
from chainflow.workers.drain import drain_lanes
from tests.integration.workers.test_track_passes import _another_process_takes_the_lease
from tests.support.chains import ANVIL_CHAIN_ID
from tests.support.chaos import chain_config, mining_stopped
from tests.support.engine import TEST_CONFIG, EngineHarness, harness_fixture

# Every unmined request is stuck at once; the tracker lease lasts half a second.
STALLING = dataclasses.replace(
    TEST_CONFIG, stuck_after_s=0.05, stuck_after_blocks=1, tracker_lease_s=0.5
)


stalling = harness_fixture(own_anvil=True, config=STALLING)


async def _one_request(harness: EngineHarness) -> tuple[Wallet, TxId, ChainConfig]:
    """A new wallet with one queued request, and the chain's config."""
    wallet = await harness.wallet()
    return wallet, await harness.submit(wallet, value="1"), await chain_config(harness)


async def _attempts(harness: EngineHarness, tx_id: TxId) -> int:
    return len((await harness.get(tx_id)).attempts)


async def _lease_runs_out(harness: EngineHarness) -> None:
    async with unit_of_work(harness.sessionmaker) as session:
        await session.execute(
            update(Chain)
            .where(Chain.chain_id == ANVIL_CHAIN_ID)
            .values(tracker_lease_until=utcnow())
        )


async def test_a_pass_stalled_past_its_lease_bumps_nothing(
    stalling: EngineHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness, engine = stalling, stalling.engine
    wallet, tx_id, chain = await _one_request(harness)
    read = observe.observe
    stalls: list[int] = []

    async def stalled(*args: Any, **kwargs: Any) -> Any:
        seen = await read(*args, **kwargs)
        if not stalls:  # the first pass stops here, after its reads, past its lease
            stalls.append(1)
            await _another_process_takes_the_lease(harness)
            await asyncio.sleep(STALLING.tracker_lease_s)  # the stall, not a wait
        return seen

    monkeypatch.setattr(observe, "observe", stalled)
    async with mining_stopped(harness.rpc):
        assert await drain_lanes(engine, chain, [wallet.id]) == 1
        assert await _attempts(harness, tx_id) == 1
        assert await tracking.track(engine, chain, held=False) == (True, 1)
        assert stalls == [1]
        assert await _attempts(harness, tx_id) == 1, "bumped beside the lease's holder"
        # The same pass under a running lease bumps the stuck request.
        await _lease_runs_out(harness)
        assert await tracking.track(engine, chain, held=False) == (True, 1)
        assert await _attempts(harness, tx_id) == 2


async def test_a_pass_slower_than_its_lease_that_nobody_took_still_records(
    stalling: EngineHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker alone behind a slow node: every pass outlasted the lease and was thrown away,
    so a mined request was never recorded. Nobody took the lease: the pass renews it."""
    harness, engine = stalling, stalling.engine
    wallet, tx_id, chain = await _one_request(harness)
    read = observe.observe

    async def slow(*args: Any, **kwargs: Any) -> Any:
        seen = await read(*args, **kwargs)
        await asyncio.sleep(STALLING.tracker_lease_s)  # the slow node, not a wait
        return seen

    monkeypatch.setattr(observe, "observe", slow)
    assert await drain_lanes(engine, chain, [wallet.id]) == 1  # anvil mines it at once
    assert await tracking.track(engine, chain, held=False) == (True, 1)
    assert (await harness.get(tx_id)).status is TxStatus.CONFIRMED  # recorded


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)  # SQLite: one process
async def test_a_stall_after_the_lease_check_stores_no_bump_beside_the_new_holder(
    stalling: EngineHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stall falls between a passing lease check and the DB transaction that stores the
    bump: the lease is checked again in that transaction, its row share-locked."""
    harness, engine = stalling, stalling.engine
    wallet, tx_id, chain = await _one_request(harness)
    stalls: list[int] = []

    @asynccontextmanager
    async def stalled(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        if not stalls:  # the pass stops before its first DB transaction; another takes over
            stalls.append(1)
            await _another_process_takes_the_lease(harness)
        async with unit_of_work(*args, **kwargs) as session:
            yield session

    async with mining_stopped(harness.rpc):
        assert await drain_lanes(engine, chain, [wallet.id]) == 1
        monkeypatch.setattr(track, "unit_of_work", stalled)
        assert await tracking.track(engine, chain, held=False) == (True, 1)
        assert stalls == [1]
        assert await _attempts(harness, tx_id) == 1, "bumped beside the lease's holder"
