"""Worker processes SIGKILLed mid-pipeline: during a fee bump, while recording a reorg, and at
random moments under load (distributed and embedded); several workers racing for one lane.
Another process always finishes the work, and the chain shows each request executed once."""

import asyncio
import contextlib
import random
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from chainflow.core.crashpoints import CrashPoint
from chainflow.domain.transactions.models import AttemptKind, TxAttempt
from chainflow.domain.transactions.state import TxStatus
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.rpc.client import RpcClient
from tests.chaos.cluster import SEEDS, Cluster, Proc, open_cluster
from tests.support.databases import REDIS_URL
from tests.support.polling import eventually

pytestmark = pytest.mark.timeout(300)


async def died(proc: Proc) -> int:
    async def code() -> int | None:
        return proc.popen.poll()

    status = await eventually(code, timeout_s=60, interval_s=0.05)
    proc.killed = True  # it killed itself at a crash point: no clean exit expected
    return status


async def attempts(cluster: Cluster) -> list[TxAttempt]:
    async with unit_of_work(cluster.sessionmaker) as session:
        return list((await session.scalars(select(TxAttempt))).all())


@contextlib.asynccontextmanager
async def block_every(rpc: RpcClient, interval_s: float) -> AsyncIterator[None]:
    """Mine an empty block every `interval_s`, as a real chain would, until the block ends."""

    async def tick() -> None:
        while True:
            await rpc.call("evm_mine")
            await asyncio.sleep(interval_s)  # the chain's block time, not synchronisation

    task = asyncio.create_task(tick())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
async def test_sigkill_during_a_fee_bump(database_url: str, anvil: str, tmp_path: Path) -> None:
    """The replacement is signed and stored, the process dies before sending it: the next
    worker sends one of the two, and only one executes."""
    async with open_cluster(
        tmp_path,
        database_url,
        anvil,
        redis_url=REDIS_URL,
        workers=0,
        stuck_after_s="1",
        resend_after_s="0.5",
    ) as cluster:
        await cluster.rpc.call("evm_setAutomine", [False])  # nothing mines: all get stuck
        doomed = cluster.start_worker(test_crash_at=CrashPoint.BUMP_STORED)
        await cluster.submit(3)
        assert await died(doomed) == -signal.SIGKILL
        assert f"crash point {CrashPoint.BUMP_STORED} reached" in cluster.log_of(doomed)
        assert any(a.kind is AttemptKind.BUMP for a in await attempts(cluster))
        await cluster.rpc.call("evm_setAutomine", [True])
        cluster.start_worker()
        await cluster.assert_settled(9, timeout_s=120)


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
@pytest.mark.parametrize("point", [CrashPoint.ATTEMPT_STORED, CrashPoint.NODE_ACCEPTED])
async def test_sigkill_between_the_steps_of_a_drain(
    point: CrashPoint, database_url: str, anvil: str, tmp_path: Path
) -> None:
    """One deep lane in windows of 4: the drain goes on in steps, each planned while the last
    one's sends go out and are recorded (docs/performance.md item 37). Killed at its third
    step (stored and not sent, or sent and not recorded, the step before maybe unrecorded
    too), the next worker finishes: each request executed once, no nonce skipped."""
    async with open_cluster(
        tmp_path,
        database_url,
        anvil,
        redis_url=REDIS_URL,
        workers=0,
        wallets=1,
        max_in_flight_per_lane="4",
    ) as cluster:
        await cluster.submit(24)  # queued before any worker runs: a deep lane
        doomed = cluster.start_worker(test_crash_at=f"{point}:3")
        assert await died(doomed) == -signal.SIGKILL
        assert f"crash point {point} reached" in cluster.log_of(doomed)
        cluster.start_worker()
        await cluster.assert_settled(24, timeout_s=120)


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
async def test_sigkill_while_recording_a_reorg(
    database_url: str, anvil: str, tmp_path: Path
) -> None:
    """A reorg shallower than the confirmation depth takes receipts away; the tracker dies
    while moving them back to submitted; the next worker re-sends and confirms each once."""
    async with open_cluster(
        tmp_path,
        database_url,
        anvil,
        redis_url=REDIS_URL,
        workers=0,
        chain={"confirmations": 12},  # deeper than all our blocks: all stay mined
        resend_after_s="0.5",
    ) as cluster:
        # A workers' round can put every request in one block: give the reorg room below it.
        await cluster.rpc.call("anvil_mine", ["0x5"])
        doomed = cluster.start_worker(test_crash_at=CrashPoint.REORG_RECORDING)
        await cluster.submit(2)

        async def all_mined() -> bool:
            return await cluster.count(TxStatus.MINED) == 6

        await eventually(all_mined, timeout_s=60)
        await cluster.rpc.call("anvil_reorg", [3, []])  # the last 3 blocks, without our txs
        assert await died(doomed) == -signal.SIGKILL
        assert f"crash point {CrashPoint.REORG_RECORDING} reached" in cluster.log_of(doomed)
        cluster.start_worker()
        async with block_every(cluster.rpc, 0.2):
            await cluster.assert_settled(6, timeout_s=120)


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
@SEEDS
async def test_random_sigkills_under_load(
    seed: int, database_url: str, anvil: str, tmp_path: Path
) -> None:
    rng = random.Random(seed)  # noqa: S311 - reproducible chaos
    async with open_cluster(
        tmp_path, database_url, anvil, redis_url=REDIS_URL, workers=3, wallets=4
    ) as cluster:
        load = asyncio.create_task(cluster.submit(40))
        kills = 0
        # At least 5 kills, more while the load lasts (a kill after the last confirmation
        # still has to leave nothing behind).
        while kills < 5 or not load.done() or await cluster.count(TxStatus.CONFIRMED) < 160:
            victim = rng.choice(cluster.alive("worker"))
            await asyncio.sleep(rng.uniform(0.2, 0.8))  # a random moment, not synchronisation
            cluster.kill(victim)
            cluster.start_worker()
            kills += 1
            if kills >= 12:
                break
        await load
        assert kills >= 5
        await cluster.assert_settled(160, timeout_s=180)


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
async def test_four_workers_race_for_one_lane(
    database_url: str, anvil: str, tmp_path: Path
) -> None:
    async with open_cluster(
        tmp_path, database_url, anvil, redis_url=REDIS_URL, workers=4, wallets=1
    ) as cluster:
        await cluster.submit(120)
        await cluster.assert_settled(120, timeout_s=120)


@pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)
@SEEDS
async def test_embedded_process_sigkilled_and_restarted(
    seed: int, database_url: str, anvil: str, tmp_path: Path
) -> None:
    rng = random.Random(seed)  # noqa: S311 - reproducible chaos
    async with open_cluster(tmp_path, database_url, anvil, embedded=True, wallets=3) as cluster:
        for _ in range(3):
            await cluster.submit(15)
            [dev] = cluster.alive("dev")
            await asyncio.sleep(rng.uniform(0.1, 0.6))  # a random moment, not synchronisation
            cluster.kill(dev)
            await cluster.serving(cluster.start_front("dev"))
        await cluster.assert_settled(135, timeout_s=180)
