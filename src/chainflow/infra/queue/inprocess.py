"""The embedded job queue: an asyncio delay heap per queue name, in one process, no Redis.

Jobs live only in memory. A handler that raises is retried with backoff; a consumer cancelled
mid-job puts the job back for the next consumer. If the process itself dies, its jobs are gone:
the database sweeper re-enqueues that work at the next start, so nothing here is persisted.
"""

import asyncio
import contextlib
import functools
import heapq
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from chainflow.infra.queue.base import (
    JOB_STATES,
    Handler,
    Job,
    JobInterrupted,
    RetryPolicy,
    check_queue_name,
    is_being_cancelled,
    log_failure,
)


@dataclass(order=True)
class _Entry:
    due_at: float
    seq: int
    job: Job = field(compare=False)
    attempt: int = field(compare=False, default=1)


@dataclass
class _Shelf:
    """One queue: entries ordered by due time then arrival, and the keys not yet finished."""

    heap: list[_Entry] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)
    bells: set[asyncio.Event] = field(default_factory=set)

    def push(self, entry: _Entry) -> None:
        heapq.heappush(self.heap, entry)
        for bell in self.bells:
            bell.set()


class InProcessJobQueue:
    """JobQueue for the single-process shape; see the module docstring for what it keeps."""

    def __init__(self, *, retry: RetryPolicy | None = None) -> None:
        self._retry = retry or RetryPolicy()
        self._shelves: dict[str, _Shelf] = {}
        self._seq = itertools.count()
        self._closed = False

    async def enqueue(self, queue: str, job: Job, *, delay_s: float = 0) -> bool:
        """Queue `job` to run after `delay_s`; False if its key is already queued or running."""
        if self._closed:
            raise RuntimeError("job queue is closed")
        if delay_s < 0:
            raise ValueError("delay_s must be >= 0")
        shelf = self._shelf(queue)
        if job.key in shelf.keys:
            return False
        shelf.keys.add(job.key)
        shelf.push(_Entry(self._now() + delay_s, next(self._seq), job))
        return True

    async def run_worker(
        self, queues: Sequence[str], handler: Handler, *, concurrency: int, stop: asyncio.Event
    ) -> None:
        """Run `handler` on jobs from `queues`, at most `concurrency` at once per queue."""
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        shelves = [(name, self._shelf(name)) for name in queues]
        async with asyncio.TaskGroup() as group:
            for name, shelf in shelves:
                group.create_task(self._consume(name, shelf, handler, concurrency, stop))

    async def job_counts(self, queues: Sequence[str]) -> dict[str, int]:
        """Jobs of `queues` by state; none fails for good here (a failed job is dropped)."""
        totals = dict.fromkeys(JOB_STATES, 0)
        now = self._now()
        for name in queues:
            shelf = self._shelves.get(name)
            if shelf is None:
                continue
            due = sum(1 for entry in shelf.heap if entry.due_at <= now)
            totals["waiting"] += due
            totals["delayed"] += len(shelf.heap) - due
            totals["active"] += max(0, len(shelf.keys) - len(shelf.heap))
        return totals

    async def close(self) -> None:
        """Forget every queued job; the database sweeper re-enqueues them at the next start."""
        self._closed = True
        self._shelves.clear()

    def _shelf(self, queue: str) -> _Shelf:
        check_queue_name(queue)
        return self._shelves.setdefault(queue, _Shelf())

    async def _consume(
        self, queue: str, shelf: _Shelf, handler: Handler, concurrency: int, stop: asyncio.Event
    ) -> None:
        bell = asyncio.Event()
        shelf.bells.add(bell)
        ringer = asyncio.create_task(_ring_on(stop, bell))
        running: dict[asyncio.Task[None], _Entry] = {}
        slots = asyncio.Semaphore(concurrency)
        try:
            while (entry := await self._take(shelf, bell, stop, slots)) is not None:
                task = asyncio.create_task(self._run(queue, shelf, entry, handler))
                running[task] = entry
                task.add_done_callback(functools.partial(_finished, running, slots))
            if running:  # graceful stop: let the running handlers finish
                await asyncio.wait(running)
        finally:
            await self._abandon(shelf, running)
            shelf.bells.discard(bell)
            ringer.cancel()

    async def _abandon(self, shelf: _Shelf, running: dict[asyncio.Task[None], _Entry]) -> None:
        """Cancel what still runs (our consumer was cancelled) and put those jobs back."""
        tasks = dict(running)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        for task, entry in tasks.items():
            if task.cancelled():
                shelf.push(_Entry(self._now(), next(self._seq), entry.job, entry.attempt))

    async def _take(
        self, shelf: _Shelf, bell: asyncio.Event, stop: asyncio.Event, slots: asyncio.Semaphore
    ) -> _Entry | None:
        """Take a free slot and the next due entry; None once `stop` is set."""
        await slots.acquire()
        while not stop.is_set():
            bell.clear()  # cleared before looking, so a push after the look rings again
            now = self._now()
            if shelf.heap and shelf.heap[0].due_at <= now:
                return heapq.heappop(shelf.heap)
            timeout_s = shelf.heap[0].due_at - now if shelf.heap else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(bell.wait(), timeout_s)
        slots.release()
        return None

    async def _run(self, queue: str, shelf: _Shelf, entry: _Entry, handler: Handler) -> None:
        try:
            await handler(entry.job)
        except asyncio.CancelledError:
            if is_being_cancelled():  # our consumer is going away; it puts the job back
                raise
            self._fail(queue, shelf, entry, JobInterrupted("handler raised CancelledError"))
        except Exception as exc:  # any failure is retried, then logged and dropped
            self._fail(queue, shelf, entry, exc)
        else:
            shelf.keys.discard(entry.job.key)

    def _fail(self, queue: str, shelf: _Shelf, entry: _Entry, error: BaseException) -> None:
        attempts = self._retry.attempts
        log_failure(entry.job, queue, error, attempt=entry.attempt, attempts=attempts)
        if entry.attempt >= attempts:
            shelf.keys.discard(entry.job.key)
            return
        due_at = self._now() + self._retry.delay_s(entry.attempt)
        shelf.push(_Entry(due_at, next(self._seq), entry.job, entry.attempt + 1))

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()


def _finished(
    running: dict[asyncio.Task[None], _Entry], slots: asyncio.Semaphore, task: asyncio.Task[None]
) -> None:
    running.pop(task, None)
    slots.release()


async def _ring_on(stop: asyncio.Event, bell: asyncio.Event) -> None:
    await stop.wait()
    bell.set()
