"""The Redis job queue on BullMQ (`bullmq` 3.4.x): one BullMQ queue per name, workers per run.

Tuned per research/queue-eval.md: `lockDuration` 15 s and `stalledInterval` 5 s bring a job
whose worker was SIGKILLed back to `wait` in about 10-20 s (the defaults take ~75 s). Jobs are
removed from Redis as soon as they finish, so Redis does not grow and a finished job's key can be
enqueued again. The queue-wide `setGlobalRateLimit`/`setGlobalConcurrency` are never used: in
3.4.4 they stop the Python worker for good (research/queue-eval.md §4).
"""

import asyncio
from collections.abc import Sequence
from typing import Any

import bullmq  # type: ignore[import-untyped]  # ships no py.typed; wrapped by this module
from redis.exceptions import RedisError

from chainflow.core.errors import Unavailable
from chainflow.core.logging import get_logger
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

log = get_logger(__name__)
_LOOP_EXIT_GRACE_S = 5.0
# A graceful close with no job left running that has still not returned after this long is stuck
# (see _unstick); its blocking wait for the next job is then cancelled.
_CLOSE_IDLE_GRACE_S = 0.5
_CLOSE_CHECK_S = 0.1


class RedisJobQueue:
    """JobQueue on Redis through BullMQ; safe to share by many processes with one `prefix`."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "chainflow",
        retry: RetryPolicy | None = None,
        lock_duration_ms: int = 15_000,
        stalled_interval_ms: int = 5_000,
        max_stalled_count: int = 2,
        enqueue_timeout_s: float = 5.0,
    ) -> None:
        if ":" in prefix or not prefix:
            raise ValueError("prefix must be non-empty and contain no ':'")
        self._url = url
        self._prefix = prefix
        self._retry = retry or RetryPolicy()
        self._enqueue_timeout_s = enqueue_timeout_s
        self._worker_options: dict[str, Any] = {
            "lockDuration": lock_duration_ms,
            "stalledInterval": stalled_interval_ms,
            "maxStalledCount": max_stalled_count,
            # Only for jobs enqueued by other producers; ours carry their own (see _job_options).
            "removeOnComplete": True,
            "removeOnFail": True,
        }
        self._queues: dict[str, Any] = {}
        self._closed = False

    async def enqueue(self, queue: str, job: Job, *, delay_s: float = 0) -> bool:
        """Queue `job` to run after `delay_s`; False if its key is already queued or running.

        Raises:
            Unavailable: Redis did not answer within `enqueue_timeout_s` (the redis client
                BullMQ builds retries a lost connection for minutes; a doorbell is not worth it).
        """
        if self._closed:
            raise RuntimeError("job queue is closed")
        if delay_s < 0:
            raise ValueError("delay_s must be >= 0")
        target = self._queue(queue)
        bull_job = bullmq.Job(target, job.name, dict(job.payload), self._job_options(job, delay_s))
        try:
            async with asyncio.timeout(self._enqueue_timeout_s):
                existed, added = await _add(target, bull_job)
        except (TimeoutError, RedisError) as exc:
            raise Unavailable("the job queue (Redis) cannot be reached") from exc
        if isinstance(added, int) and added < 0:
            raise RuntimeError(f"BullMQ refused job {job.key!r} with code {added}")
        return not existed

    async def run_worker(
        self, queues: Sequence[str], handler: Handler, *, concurrency: int, stop: asyncio.Event
    ) -> None:
        """Run `handler` on jobs from `queues`, at most `concurrency` at once per queue.

        If this coroutine is cancelled, running handlers are cancelled and their jobs stay
        locked in Redis until the lock expires; another worker then runs them again.
        """
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        workers = [self._worker(check_queue_name(name), handler, concurrency) for name in queues]
        runs = [asyncio.create_task(_start(worker)) for worker in workers]
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait([stopping, *runs], return_when=asyncio.FIRST_COMPLETED)
            if not stop.is_set():
                ended = next(run for run in runs if run.done())
                raise RuntimeError("a BullMQ worker stopped on its own") from ended.exception()
        finally:
            stopping.cancel()
            await _close(workers, runs, force=is_being_cancelled())

    async def job_counts(self, queues: Sequence[str]) -> dict[str, int]:
        """Jobs of `queues` by state, summed (BullMQ's `wait` is reported as `waiting`)."""
        totals = dict.fromkeys(JOB_STATES, 0)
        for name in queues:
            counts = await self._queue(name).getJobCounts("wait", "active", "delayed", "failed")
            for state, count in counts.items():
                totals["waiting" if state == "wait" else state] += int(count or 0)
        return totals

    async def close(self) -> None:
        """Close the producer connections; enqueue fails afterwards."""
        self._closed = True
        queues, self._queues = list(self._queues.values()), {}
        await asyncio.gather(*(queue.close() for queue in queues))

    def _queue(self, name: str) -> Any:
        if name not in self._queues:
            options = {"connection": self._url, "prefix": self._prefix}
            self._queues[name] = bullmq.Queue(check_queue_name(name), options)
        return self._queues[name]

    def _job_options(self, job: Job, delay_s: float) -> dict[str, Any]:
        options: dict[str, Any] = {
            "jobId": job.key,
            "attempts": self._retry.attempts,
            "backoff": {"type": "exponential", "delay": round(self._retry.base_delay_s * 1000)},
            "removeOnComplete": True,
            "removeOnFail": True,
        }
        if delay_ms := round(delay_s * 1000):
            options["delay"] = delay_ms
        return options

    def _worker(self, queue: str, handler: Handler, concurrency: int) -> Any:
        async def process(bull_job: Any, _token: str) -> None:
            await _run(queue, handler, bull_job)

        options = {
            **self._worker_options,
            "autorun": False,
            "concurrency": concurrency,
            "connection": self._url,
            "prefix": self._prefix,
        }
        worker = bullmq.Worker(queue, process, options)
        worker.on(
            "error",
            lambda error, *_: log.error("queue.worker_error", queue=queue, error=repr(error)[:500]),
        )
        worker.on(
            "stalled", lambda job_id, *_: log.warning("job.stalled", queue=queue, job_key=job_id)
        )
        return worker


async def _close(workers: list[Any], runs: list[asyncio.Task[None]], *, force: bool) -> None:
    """Close the workers (waiting for running jobs unless `force`), then end their loops.

    A worker that never reached Redis is still inside redis-py's reconnect backoff, which lasts
    minutes; its loop is cancelled after a short grace instead of being waited for.
    """
    for worker in workers:
        # Worker.close() closes the connections before run() stops this timer; a check firing in
        # between reopens a connection that nothing closes (a ResourceWarning at exit).
        if (timer := getattr(worker, "stalledCheckTimer", None)) is not None:
            timer.stop()
    await asyncio.gather(*(_close_worker(worker, force=force) for worker in workers))
    if runs:
        _, stuck = await asyncio.wait(runs, timeout=_LOOP_EXIT_GRACE_S)
        for run in stuck:
            run.cancel()
    await asyncio.gather(*runs, return_exceptions=True)
    # Anything the loops sent after close() reopened a pooled connection: close those too.
    await asyncio.gather(*(worker.backend.close(force=True) for worker in workers))


async def _close_worker(worker: Any, *, force: bool) -> None:
    """Close one BullMQ worker; a graceful close waits for its running jobs, and no longer.

    Worker.close() ignores cancellation until its teardown ends, and that teardown waits for every
    task the worker holds, the fetch of the next job included. close() cancels the fetch's
    blocking BZPOPMIN only if it is in flight when close() starts: a fetch that was still moving a
    job to active starts a new BZPOPMIN once close() has begun, and on redis-py 8 that read was
    seen to wait forever on a connection the server no longer had (a stop hung for 300 s in CI).
    So once no job runs and close() has not returned for half a second, that BZPOPMIN is cancelled.
    """
    closing = asyncio.ensure_future(worker.close(force=force))
    idle_since: float | None = None
    loop = asyncio.get_running_loop()
    cancelled = False
    while not closing.done():
        try:
            await asyncio.wait({closing}, timeout=_CLOSE_CHECK_S)
        except asyncio.CancelledError:
            cancelled = True  # as close() itself does: finish closing, then re-raise
        if closing.done() or worker.jobs:
            idle_since = None
            continue
        idle_since = idle_since if idle_since is not None else loop.time()
        if loop.time() - idle_since >= _CLOSE_IDLE_GRACE_S:
            _unstick(worker)
            idle_since = None
    closing.result()
    if cancelled:
        raise asyncio.CancelledError


def _unstick(worker: Any) -> None:
    """Cancel the blocking wait of a closing worker with no running job; getNextJob takes that
    cancel as "no job" while closing. Nothing else is cancelled: a fetch moving a job to active
    holds that job's lock, and cancelling it would strand the job until its lock expired."""
    if worker.waiting is not None and not worker.waiting.done():
        log.warning("queue.close_stuck", queue=str(worker.name))
        worker.waiting.cancel()


async def _add(target: Any, bull_job: Any) -> tuple[int, object]:
    """Add `bull_job`; return (1 if its id already existed else 0, BullMQ's answer)."""
    # BullMQ ignores an add whose id exists and returns that id either way, so the EXISTS
    # runs in the same MULTI/EXEC as the add to tell the two cases apart atomically.
    async with target.client.pipeline(transaction=True) as pipe:
        pipe.exists(target.toKey(bull_job.id))
        await target.scripts.addJob(bull_job, pipe)
        existed, added = await pipe.execute()
    return int(existed), added


async def _start(worker: Any) -> None:
    """Run a BullMQ worker once it knows the server's version.

    The Python Worker never asks, so it assumes Redis < 6 and rounds every BZPOPMIN timeout up to
    whole seconds: delays and retry backoffs then land up to 1 s late. Asking first fixes that.
    """
    await worker.blockingRedisConnection.getRedisVersion()
    await worker.run()


async def _run(queue: str, handler: Handler, bull_job: Any) -> None:
    """Run `handler` for one BullMQ job; raising hands the retry decision back to BullMQ."""
    job = _decode(queue, bull_job)
    attempt = int(bull_job.attemptsMade) + 1
    attempts = int(bull_job.opts.get("attempts") or 1)
    try:
        await handler(job)
    except asyncio.CancelledError:
        if is_being_cancelled():  # the worker is force-closing; the lock expires, it re-runs
            raise
        error = JobInterrupted("handler raised CancelledError")
        log_failure(job, queue, error, attempt=attempt, attempts=attempts)
        raise error from None
    except Exception as exc:
        log_failure(job, queue, exc, attempt=attempt, attempts=attempts)
        raise


def _decode(queue: str, bull_job: Any) -> Job:
    """Turn a BullMQ job back into a Job; a malformed one (another producer?) is failed for good."""
    data = bull_job.data if isinstance(bull_job.data, dict) else {}
    try:
        return Job(name=str(bull_job.name), key=str(bull_job.id), payload=data)
    except ValueError as exc:
        log.error("job.rejected", queue=queue, job_key=str(bull_job.id), error=str(exc))
        raise bullmq.UnrecoverableError(str(exc)) from exc
