"""Doorbells ring a chain at most once per window per process, in the background: a caller
never waits for the queue, and an outage is logged once and retried after a back-off."""

import asyncio
import uuid

import structlog

from chainflow.core.errors import Unavailable
from chainflow.domain.transactions.doorbell import Doorbells
from chainflow.infra.queue import InProcessJobQueue, Job


class CountingQueue(InProcessJobQueue):
    def __init__(self) -> None:
        super().__init__()
        self.enqueued: list[str] = []
        self.failing = False
        self.hang = asyncio.Event()
        self.hang.set()

    async def enqueue(self, queue: str, job: Job, *, delay_s: float = 0) -> bool:
        await self.hang.wait()
        if self.failing:
            raise Unavailable("the job queue (Redis) cannot be reached")
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
    await doorbells.settle()
    assert queue.enqueued == ["wake-1", "wake-137"]


async def test_rings_again_once_the_window_passed() -> None:
    queue = CountingQueue()
    doorbells = Doorbells(queue, window_s=0)
    lane = uuid.uuid4()
    await doorbells.ring(1, lane)
    await doorbells.settle()
    await doorbells.ring(1, lane)
    await doorbells.settle()
    assert len(queue.enqueued) == 2


async def test_a_hanging_queue_never_holds_the_caller() -> None:
    queue = CountingQueue()
    queue.hang.clear()  # Redis accepts the connection and never answers
    doorbells = Doorbells(queue, window_s=0)
    for _ in range(100):  # each would have waited for the queue's 5 s timeout
        await asyncio.wait_for(doorbells.ring(1, uuid.uuid4()), timeout=1)
    queue.hang.set()
    await doorbells.settle()
    assert queue.enqueued == ["wake-1"]  # the rings behind the one on its way were covered


async def test_an_outage_is_logged_once_and_rings_resume_after_the_back_off() -> None:
    queue = CountingQueue()
    queue.failing = True
    doorbells = Doorbells(queue, window_s=0, backoff_s=0)
    with structlog.testing.capture_logs() as logs:
        for _ in range(20):
            await doorbells.ring(1, uuid.uuid4())
            await doorbells.settle()
        queue.failing = False
        await doorbells.ring(1, uuid.uuid4())
        await doorbells.settle()
    events = [entry["event"] for entry in logs]
    assert events == ["doorbell.lost", "doorbell.restored"]
    assert queue.enqueued == ["wake-1"]


async def test_while_failing_rings_are_skipped_for_the_back_off() -> None:
    queue = CountingQueue()
    queue.failing = True
    doorbells = Doorbells(queue, window_s=0, backoff_s=3600)
    await doorbells.ring(1, uuid.uuid4())
    await doorbells.settle()
    queue.failing = False
    await doorbells.ring(1, uuid.uuid4())  # inside the back-off: skipped, workers poll
    await doorbells.settle()
    assert queue.enqueued == []
