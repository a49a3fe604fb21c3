"""Doorbells ring a chain at most once per window per process; other chains ring freely."""

import uuid

from chainflow.domain.transactions.doorbell import Doorbells
from chainflow.infra.queue import InProcessJobQueue, Job


class CountingQueue(InProcessJobQueue):
    def __init__(self) -> None:
        super().__init__()
        self.enqueued: list[str] = []

    async def enqueue(self, queue: str, job: Job, *, delay_s: float = 0) -> bool:
        self.enqueued.append(job.key or "")
        return await super().enqueue(queue, job, delay_s=delay_s)


async def test_a_burst_on_one_chain_rings_once_whatever_the_lanes() -> None:
    queue = CountingQueue()
    doorbells = Doorbells(queue, window_s=60)
    lane, other = uuid.uuid4(), uuid.uuid4()
    for _ in range(50):
        await doorbells.ring(1, lane)
    await doorbells.ring(1, other)  # the chain's round drains this lane too
    await doorbells.ring(137, lane)
    assert queue.enqueued == ["wake-1", "wake-137"]


async def test_rings_again_once_the_window_passed() -> None:
    queue = CountingQueue()
    doorbells = Doorbells(queue, window_s=0)
    lane = uuid.uuid4()
    await doorbells.ring(1, lane)
    await doorbells.ring(1, lane)
    assert len(queue.enqueued) == 2
