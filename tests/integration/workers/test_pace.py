"""A chain loop with nothing to do (workers/pace.py, docs/performance.md item 19): it waits
longer between empty rounds yet answers a doorbell at once, ignores other workers' signals
while it holds neither a lane nor the tracker lease, does not try to take a tracker lease
the chain's row shows another live process holding, and answers another worker's sends with a
tracking pass alone while it only tracks (docs/performance.md item 49)."""

import asyncio
import dataclasses
import functools
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.core.clock import utcnow
from chainflow.core.types import WalletId
from chainflow.domain.chains.models import Chain
from chainflow.domain.transactions import repository
from chainflow.domain.transactions.doorbell import drain_job
from chainflow.domain.transactions.state import TxStatus
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.queue import chain_queue
from chainflow.infra.queue.inprocess import InProcessJobQueue
from chainflow.infra.signing.keystore import MasterKey
from chainflow.workers import pace as pace_module
from chainflow.workers.engine import Engine, ScheduleConfig
from chainflow.workers.main import run_engine, run_round
from chainflow.workers.pace import Pace
from tests.support.chains import ANVIL_CHAIN_ID
from tests.support.engine import EngineHarness, open_engine_harness
from tests.support.polling import eventually


@asynccontextmanager
async def running(
    engine: Engine, queue: InProcessJobQueue, *, poll_s: float, idle_poll_s: float
) -> AsyncIterator[None]:
    stop = asyncio.Event()
    loops = asyncio.create_task(
        run_engine(engine, stop, queue=queue, poll_s=poll_s, idle_poll_s=idle_poll_s)
    )
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(loops, timeout=30)


def _without_schedule_passes(harness: EngineHarness) -> Engine:
    """The harness's engine with no schedule pass due within a test (they end a loop's wait)."""
    ports = dataclasses.replace(harness.engine.ports, schedules=ScheduleConfig(poll_s=60))
    return Engine(ports, harness.engine.state)


async def _idle_for(engine: Engine, wait_s: float) -> Pace:
    """The chain loop's pace once its wait after empty rounds reached `wait_s`."""

    async def idle() -> Pace | None:
        pace = engine.state.paces.get(ANVIL_CHAIN_ID)
        return pace if pace is not None and pace.wait_s() >= wait_s else None

    return await eventually(idle, timeout_s=30)


async def test_an_idle_loop_waits_longer_yet_answers_a_doorbell_at_once(
    sessionmaker: async_sessionmaker[AsyncSession],
    anvil_url: str,
    master_key: MasterKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with open_engine_harness(sessionmaker, anvil_url, master_key) as harness:
        wallet = await harness.wallet()
        engine = _without_schedule_passes(harness)  # only the pace sets the waits
        rounds = 0
        real = repository.lanes_with_queued

        async def lanes_with_queued(*args: Any, **kwargs: Any) -> dict[WalletId, int]:
            nonlocal rounds
            rounds += 1  # one read of the lanes per round
            return await real(*args, **kwargs)

        monkeypatch.setattr(repository, "lanes_with_queued", lanes_with_queued)
        queue = InProcessJobQueue()
        async with running(engine, queue, poll_s=0.2, idle_poll_s=30):
            pace = await _idle_for(engine, 6.0)  # after 0.2 + 0.4 + ... + 3.2 s of nothing
            # One round per wait: with a round every 0.2 s it would have been ~30.
            assert rounds <= 8, rounds
            tx_id = await harness.submit(wallet, value="1")
            await queue.enqueue(chain_queue(ANVIL_CHAIN_ID), drain_job(ANVIL_CHAIN_ID, wallet.id))

            async def left_queued() -> bool:
                return (await harness.get(tx_id)).status is not TxStatus.QUEUED

            # Its wait had at least 6 s to run: the doorbell, not a poll, started the round.
            await eventually(left_queued, timeout_s=4)

            async def polling_again() -> bool:
                return pace.wait_s() < 1.0  # once its round that found work has ended

            await eventually(polling_again, timeout_s=10)
        await harness.run_until([tx_id], lambda tx: tx.status is TxStatus.CONFIRMED)


async def test_signals_reach_a_loop_only_while_it_holds_a_lane_or_the_tracker(
    sessionmaker: async_sessionmaker[AsyncSession], anvil_url: str, master_key: MasterKey
) -> None:
    async with open_engine_harness(sessionmaker, anvil_url, master_key) as harness:
        engine = harness.engine
        wakeup = engine.wakeup(ANVIL_CHAIN_ID)
        engine.hear(ANVIL_CHAIN_ID)
        assert wakeup.is_set()  # no loop yet: nothing known, so it wakes
        wakeup.clear()
        pace = Pace(poll_s=0.1, idle_poll_s=1.0, lane_lease_s=5.0)
        engine.state.paces[ANVIL_CHAIN_ID] = pace
        engine.hear(ANVIL_CHAIN_ID)
        assert not wakeup.is_set()  # holds nothing: another worker's sends are not for it
        engine.wake(ANVIL_CHAIN_ID)
        assert wakeup.is_set()  # a doorbell still wakes it
        wakeup.clear()
        pace.tracking = True
        engine.hear(ANVIL_CHAIN_ID)
        assert wakeup.is_set()


async def test_a_round_leaves_alone_the_tracker_lease_another_live_process_holds(
    sessionmaker: async_sessionmaker[AsyncSession], anvil_url: str, master_key: MasterKey
) -> None:
    async with open_engine_harness(sessionmaker, anvil_url, master_key) as harness:
        holder = harness.engine
        other = Engine.start(dataclasses.replace(holder.ports, owner="another-worker"))
        try:
            assert (await run_round(holder, ANVIL_CHAIN_ID)).tracking
            with _lease_updates(harness) as updates:
                done = await run_round(other, ANVIL_CHAIN_ID)
            assert not done.tracking
            assert updates == [], updates  # the row said who holds it: no UPDATE to learn it
            async with unit_of_work(sessionmaker) as session:  # the holder died a while ago
                await session.execute(
                    update(Chain)
                    .where(Chain.chain_id == ANVIL_CHAIN_ID)
                    .values(tracker_lease_until=utcnow() - timedelta(seconds=1))
                )
            with _lease_updates(harness) as updates:
                done = await run_round(other, ANVIL_CHAIN_ID)
            assert done.tracking
            assert len(updates) == 1
            assert not (await run_round(holder, ANVIL_CHAIN_ID)).tracking
        finally:
            await other.stop()


@contextmanager
def _lease_updates(harness: EngineHarness) -> Iterator[list[str]]:
    """The UPDATEs of the chains table run inside the block."""
    engine = harness.sessionmaker.kw["bind"].sync_engine
    updates: list[str] = []

    def count(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        if sql.lstrip().upper().startswith("UPDATE CHAINS"):
            updates.append(sql)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield updates
    finally:
        event.remove(engine, "before_cursor_execute", count)


async def test_sends_heard_while_only_tracking_get_a_pass_alone_and_a_doorbell_a_round(
    sessionmaker: async_sessionmaker[AsyncSession],
    anvil_url: str,
    master_key: MasterKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with _only_tracking(sessionmaker, anvil_url, master_key, monkeypatch) as (
        _,
        engine,
        counts,
    ):
        assert counts == {"rounds": 1, "passes": 1}
        for passes in (2, 3):
            engine.hear_sends(ANVIL_CHAIN_ID)

            async def passed(passes: int = passes) -> bool:
                return counts["passes"] == passes

            await eventually(passed, timeout_s=10)
            assert counts["rounds"] == 1  # no round: no read of the lanes
        engine.hear(ANVIL_CHAIN_ID)  # room freed by the other worker's tracker: a round

        async def rounds(count: int) -> bool:
            return counts["rounds"] == count and counts["passes"] == count + 2

        await eventually(functools.partial(rounds, 2), timeout_s=10)
        engine.wake(ANVIL_CHAIN_ID)  # a doorbell: a round
        await eventually(functools.partial(rounds, 3), timeout_s=10)


async def test_a_pass_alone_that_finds_the_tracker_lease_taken_goes_back_to_rounds(
    sessionmaker: async_sessionmaker[AsyncSession],
    anvil_url: str,
    master_key: MasterKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with _only_tracking(sessionmaker, anvil_url, master_key, monkeypatch) as (
        harness,
        engine,
        counts,
    ):
        assert counts["rounds"] == 1
        async with unit_of_work(sessionmaker) as session:  # another process took it over
            await session.execute(
                update(Chain)
                .where(Chain.chain_id == ANVIL_CHAIN_ID)
                .values(
                    tracker_owner="another-worker",
                    tracker_lease_until=utcnow() + timedelta(seconds=60),
                )
            )
        with _lease_updates(harness) as updates:
            engine.hear_sends(ANVIL_CHAIN_ID)  # a pass alone tries to renew: refused

            async def back_to_rounds() -> bool:
                return not await _tracks_alone(engine)

            await eventually(back_to_rounds, timeout_s=10, what="the pass alone given up")
        assert len(updates) == 1, updates  # the renewal tried, nothing tracked
        assert counts == {"rounds": 1, "passes": 1}
        engine.hear_sends(ANVIL_CHAIN_ID)  # now a round, which reads the lanes

        async def a_round() -> bool:
            return counts["rounds"] == 2

        await eventually(a_round, timeout_s=10, what="a round for the next sends")

        async def rounds_again() -> bool:  # counted as the round starts; it ends after
            return not engine.state.paces[ANVIL_CHAIN_ID].tracking

        await eventually(rounds_again, timeout_s=10, what="the chain back to rounds")


@asynccontextmanager
async def _only_tracking(
    sessionmaker: async_sessionmaker[AsyncSession],
    anvil_url: str,
    master_key: MasterKey,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[EngineHarness, Engine, dict[str, int]]]:
    """A running engine whose first round took the tracker lease and nothing else, with its
    rounds and passes counted; no schedule pass and no poll within the test: only what the
    test sends starts a round."""
    async with open_engine_harness(sessionmaker, anvil_url, master_key) as harness:
        engine = _without_schedule_passes(harness)
        counts = _count_rounds_and_passes(monkeypatch)
        async with running(engine, InProcessJobQueue(), poll_s=20, idle_poll_s=30):
            await eventually(functools.partial(_tracks_alone, engine), timeout_s=10)
            yield harness, engine, counts


def _count_rounds_and_passes(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Rounds (one read of the lanes each) and tracking passes (one read of the requests in
    flight each), counted; passes alone for 30 s after a round, the tests' own pace."""
    counts = {"rounds": 0, "passes": 0}
    lanes, tracked = repository.lanes_with_queued, repository.tracked

    async def counted_lanes(*args: Any, **kwargs: Any) -> dict[WalletId, int]:
        counts["rounds"] += 1
        return await lanes(*args, **kwargs)

    async def counted_passes(*args: Any, **kwargs: Any) -> Any:
        counts["passes"] += 1
        return await tracked(*args, **kwargs)

    monkeypatch.setattr(repository, "lanes_with_queued", counted_lanes)
    monkeypatch.setattr(repository, "tracked", counted_passes)
    monkeypatch.setattr(pace_module, "ALONE_FOR_S", 30.0)
    return counts


async def _tracks_alone(engine: Engine) -> bool:
    pace = engine.state.paces.get(ANVIL_CHAIN_ID)
    return pace is not None and pace.tracks_alone(time.monotonic())
