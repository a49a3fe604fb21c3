"""The JobQueue contract, run against the in-process queue and the Redis (BullMQ) queue.

Redis is real (`CHAINFLOW_TEST_REDIS_URL`, default db 15 on loopback); if it cannot be reached
the tests fail. Each test uses its own key prefix and queue name and deletes only its own keys.

A worker that dies mid-job: on Redis the job's lock expires and another worker runs it again
(tested with SIGKILL on a worker process). In process, a consumer cancelled mid-job puts its job
back; when the whole process dies, the jobs are gone and the database sweeper re-enqueues them.
"""

import asyncio
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pytest
import redis.asyncio
import structlog

from chainflow.core.errors import Unavailable
from chainflow.infra.queue import (
    Handler,
    InProcessJobQueue,
    Job,
    JobQueue,
    RedisJobQueue,
    RetryPolicy,
    chain_queue,
)
from tests.support.databases import REDIS_URL
from tests.support.polling import eventually

RETRY = RetryPolicy(attempts=3, base_delay_s=0.2)
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Backend:
    """One implementation under test, with a queue name and key prefix of its own."""

    kind: str
    queue: JobQueue
    name: str
    prefix: str


@dataclass
class Recorder:
    """A handler that notes each job it runs and when (monotonic seconds)."""

    runs: list[tuple[Job, float]] = field(default_factory=list)

    async def __call__(self, job: Job) -> None:
        self.runs.append((job, time.monotonic()))

    def job_keys(self) -> list[str]:
        return [job.key for job, _ in self.runs]

    def first_run_at(self, key: str) -> float:
        return next(at for job, at in self.runs if job.key == key)


@pytest.fixture(params=["inprocess", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    name = chain_queue(uuid.uuid4().int % 10**9)
    if request.param == "inprocess":
        embedded = InProcessJobQueue(retry=RETRY)
        yield Backend("inprocess", embedded, name, prefix="")
        await embedded.close()
        return
    prefix = f"cf-test-{uuid.uuid4().hex[:12]}"
    client = redis.asyncio.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()  # unreachable Redis fails the test here, it is never skipped
        queue = RedisJobQueue(REDIS_URL, prefix=prefix, retry=RETRY)
        yield Backend("redis", queue, name, prefix)
        await queue.close()
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@asynccontextmanager
async def consuming(
    queue: JobQueue, names: Sequence[str], handler: Handler, *, concurrency: int = 1
) -> AsyncIterator[asyncio.Task[None]]:
    """Run a worker for the block; on exit stop it and wait for it to return."""
    stop = asyncio.Event()
    task = asyncio.create_task(queue.run_worker(names, handler, concurrency=concurrency, stop=stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)


class TestJob:
    @pytest.mark.parametrize("key", ["", "12345", "tx:1", "a b", "x" * 257])
    def test_rejects_keys_bullmq_cannot_store(self, key: str) -> None:
        with pytest.raises(ValueError, match="job key"):
            Job("lanes.drain", key)

    @pytest.mark.parametrize("name", ["drain", "Lanes.Drain", "lanes.drain.now", ""])
    def test_rejects_names_that_are_not_noun_verb(self, name: str) -> None:
        with pytest.raises(ValueError, match="job name"):
            Job(name, "lane-1")

    @pytest.mark.parametrize("value", [1.5, True, None])
    def test_rejects_payload_values_other_than_str_or_int(self, value: object) -> None:
        with pytest.raises(ValueError, match="payload"):
            Job("lanes.drain", "lane-1", {"x": value})  # type: ignore[dict-item]

    def test_chain_queue_names_one_queue_per_chain(self) -> None:
        assert chain_queue(137) == "chain-137"


class TestEnqueue:
    async def test_job_is_delivered_with_its_name_key_and_payload(self, backend: Backend) -> None:
        job = Job("lanes.drain", "lane-0xabc-137-v3", {"wallet": "0xabc", "chain_id": 137})
        recorder = Recorder()
        assert await backend.queue.enqueue(backend.name, job) is True
        async with consuming(backend.queue, [backend.name], recorder):
            await eventually(lambda: _ran(recorder, job.key))
        assert [run for run, _ in recorder.runs] == [job]

    async def test_rejects_bad_queue_names_and_negative_delays(self, backend: Backend) -> None:
        job = Job("lanes.drain", "lane-1")
        with pytest.raises(ValueError, match="queue name"):
            await backend.queue.enqueue("chain:1", job)
        with pytest.raises(ValueError, match="delay_s"):
            await backend.queue.enqueue(backend.name, job, delay_s=-1)

    async def test_second_enqueue_of_a_waiting_key_is_deduplicated(self, backend: Backend) -> None:
        job = Job("lanes.drain", "lane-1-v1")
        sentinel = Job("lanes.drain", "lane-2-v1")
        assert await backend.queue.enqueue(backend.name, job) is True
        assert await backend.queue.enqueue(backend.name, job) is False
        assert await backend.queue.enqueue(backend.name, sentinel) is True
        recorder = Recorder()
        async with consuming(backend.queue, [backend.name], recorder):
            # One consumer takes jobs in order, so once the sentinel ran a duplicate would have.
            await eventually(lambda: _ran(recorder, sentinel.key))
        assert recorder.job_keys() == [job.key, sentinel.key]

    async def test_key_waiting_out_a_delay_is_deduplicated(self, backend: Backend) -> None:
        job = Job("lanes.drain", "lane-1-v1")
        assert await backend.queue.enqueue(backend.name, job, delay_s=30) is True
        assert await backend.queue.enqueue(backend.name, job) is False
        assert await backend.queue.enqueue(backend.name, job, delay_s=1) is False

    async def test_key_is_accepted_again_once_its_job_has_run(self, backend: Backend) -> None:
        job = Job("lanes.drain", "lane-1-v1")
        recorder = Recorder()
        async with consuming(backend.queue, [backend.name], recorder):
            assert await backend.queue.enqueue(backend.name, job) is True
            await eventually(lambda: _ran(recorder, job.key))
            # The key frees up when the finished job leaves the queue, just after the handler.
            await eventually(lambda: backend.queue.enqueue(backend.name, job))
            await eventually(lambda: _true(recorder.job_keys().count(job.key) == 2))

    async def test_enqueue_after_close_fails(self, backend: Backend) -> None:
        await backend.queue.close()
        with pytest.raises(RuntimeError, match="closed"):
            await backend.queue.enqueue(backend.name, Job("lanes.drain", "lane-1"))


class TestDelay:
    async def test_delayed_job_runs_after_its_delay_without_holding_back_others(
        self, backend: Backend
    ) -> None:
        delayed = Job("lanes.drain", "lane-1-v1")
        prompt = Job("lanes.drain", "lane-2-v1")
        recorder = Recorder()
        async with consuming(backend.queue, [backend.name], recorder):
            enqueued_at = time.monotonic()
            await backend.queue.enqueue(backend.name, delayed, delay_s=1.0)
            await backend.queue.enqueue(backend.name, prompt)
            await eventually(lambda: _ran(recorder, delayed.key))
        assert recorder.job_keys() == [prompt.key, delayed.key]
        waited_s = recorder.first_run_at(delayed.key) - enqueued_at
        assert 0.98 <= waited_s < 5, waited_s  # BullMQ rounds delays to milliseconds


class TestRetry:
    async def test_failed_job_is_retried_after_a_backoff(self, backend: Backend) -> None:
        job = Job("lanes.drain", "lane-1-v1")
        calls: list[float] = []

        async def fail_once(_: Job) -> None:
            calls.append(time.monotonic())
            if len(calls) == 1:
                raise RuntimeError("node unreachable")

        await backend.queue.enqueue(backend.name, job)
        with structlog.testing.capture_logs() as logs:
            async with consuming(backend.queue, [backend.name], fail_once):
                await eventually(lambda: _true(len(calls) == 2))
        assert calls[1] - calls[0] >= RETRY.base_delay_s - 0.02
        failed = [entry for entry in logs if entry["event"] == "job.failed"]
        assert [(e["job_key"], e["attempt"], e["will_retry"]) for e in failed] == [
            (job.key, 1, True)
        ]

    async def test_handler_that_raises_cancelled_error_is_retried(self, backend: Backend) -> None:
        job = Job("lanes.drain", "lane-1-v1")
        calls: list[str] = []

        async def cancelled_once(job: Job) -> None:
            calls.append(job.key)
            if len(calls) == 1:
                raise asyncio.CancelledError  # e.g. a cancelled inner task leaking out

        await backend.queue.enqueue(backend.name, job)
        async with consuming(backend.queue, [backend.name], cancelled_once):
            await eventually(lambda: _true(len(calls) == 2))

    async def test_job_failing_every_attempt_is_logged_and_dropped(self, backend: Backend) -> None:
        job = Job("lanes.drain", "lane-1-v1")
        calls: list[str] = []

        async def always_fail(job: Job) -> None:
            calls.append(job.key)
            raise RuntimeError("always")

        await backend.queue.enqueue(backend.name, job)
        with structlog.testing.capture_logs() as logs:
            async with consuming(backend.queue, [backend.name], always_fail):
                # The key is free once the job is dropped: only then does enqueue accept it.
                await eventually(lambda: backend.queue.enqueue(backend.name, job), timeout_s=15)
                assert len(calls) == RETRY.attempts
        dropped = [e for e in logs if e["event"] == "job.failed" and not e["will_retry"]]
        assert [(e["log_level"], e["attempt"]) for e in dropped] == [("error", RETRY.attempts)]


class TestWorker:
    async def test_concurrency_bounds_the_handlers_running_at_once(self, backend: Backend) -> None:
        jobs = [Job("lanes.drain", f"lane-{n}-v1") for n in range(5)]
        gates = {job.key: asyncio.Event() for job in jobs}
        running: set[str] = set()
        finished: list[str] = []
        peak = 0

        async def gated(job: Job) -> None:
            nonlocal peak
            running.add(job.key)
            peak = max(peak, len(running))
            await gates[job.key].wait()
            running.discard(job.key)
            finished.append(job.key)

        for job in jobs:
            await backend.queue.enqueue(backend.name, job)
        async with consuming(backend.queue, [backend.name], gated, concurrency=2):
            await eventually(lambda: _true(len(running) == 2))
            while len(finished) < len(jobs):
                await eventually(lambda: _true(bool(running)))
                gates[sorted(running)[0]].set()
                done = len(finished)
                await eventually(lambda: _true(len(finished) > done))  # noqa: B023 - read at once
        assert peak == 2
        assert sorted(finished) == sorted(gates)

    async def test_consumes_every_queue_it_is_given(self, backend: Backend) -> None:
        other = f"{backend.name}-b"
        recorder = Recorder()
        await backend.queue.enqueue(backend.name, Job("lanes.drain", "lane-1-v1"))
        await backend.queue.enqueue(other, Job("webhooks.deliver", "hook-1-v1"))
        async with consuming(backend.queue, [backend.name, other], recorder):
            await eventually(lambda: _true(len(recorder.runs) == 2))
        assert sorted(recorder.job_keys()) == ["hook-1-v1", "lane-1-v1"]

    async def test_stop_lets_the_running_job_finish_then_returns(self, backend: Backend) -> None:
        job = Job("lanes.drain", "lane-1-v1")
        gate = asyncio.Event()
        started: list[str] = []
        finished: list[str] = []

        async def gated(job: Job) -> None:
            started.append(job.key)
            await gate.wait()
            finished.append(job.key)

        stop = asyncio.Event()
        worker = asyncio.create_task(
            backend.queue.run_worker([backend.name], gated, concurrency=1, stop=stop)
        )
        await backend.queue.enqueue(backend.name, job)
        await eventually(lambda: _true(bool(started)))
        stop.set()
        # A bounded look for a wrong early return, not a synchronisation: nothing is awaited here.
        done, _ = await asyncio.wait({worker}, timeout=0.3)
        assert not done
        gate.set()
        await asyncio.wait_for(worker, timeout=15)
        assert finished == [job.key]
        # The job completed (it was not left running for a later redelivery): its key is free.
        assert await backend.queue.enqueue(backend.name, job) is True

    async def test_stop_returns_when_it_lands_while_the_next_job_is_fetched(
        self, backend: Backend
    ) -> None:
        # Stopped as soon as one of two queues' jobs ran, a worker is often still moving the other
        # queue's job (or the next) to active; on Redis, BullMQ's close() then waited for a
        # blocking fetch begun after it, which about once in ten stops never returned (CI hung for
        # 300 s). Thirty stops in a row must each return.
        for round_no in range(30):
            names = [f"{backend.name}-{round_no}", f"{backend.name}-{round_no}-b"]
            for name in names:
                await backend.queue.enqueue(name, Job("lanes.drain", f"lane-{round_no}-v1"))
            ran: list[str] = []

            async def note(job: Job, ran: list[str] = ran) -> None:
                ran.append(job.key)

            stop = asyncio.Event()
            worker = asyncio.create_task(
                backend.queue.run_worker(names, note, concurrency=1, stop=stop)
            )
            await eventually(partial(_true, ran), interval_s=0.001)
            stop.set()
            done, _ = await asyncio.wait({worker}, timeout=15)
            assert done, f"stop {round_no} did not return within 15 s"
            worker.result()
            # Nothing stranded: the job that did not run is still waiting, not held active.
            counts = await backend.queue.job_counts(names)
            assert counts["active"] == 0, (round_no, counts)
            assert len(ran) + counts["waiting"] == 2, (round_no, ran, counts)

    async def test_job_of_a_worker_that_dies_mid_job_is_redelivered(
        self, backend: Backend, tmp_path: Path
    ) -> None:
        job = Job("lanes.drain", "lane-1-v1")
        assert await backend.queue.enqueue(backend.name, job)
        if backend.kind == "redis":
            died_at = await _sigkill_worker_process_mid_job(backend, job, tmp_path)
        else:
            died_at = await _cancel_consumer_mid_job(backend, job)
        recorder = Recorder()
        async with consuming(backend.queue, [backend.name], recorder):
            await eventually(lambda: _ran(recorder, job.key), timeout_s=30)
        redelivered_after_s = recorder.first_run_at(job.key) - died_at
        assert redelivered_after_s < 30, redelivered_after_s


class TestRedisJobQueue:
    @pytest.mark.parametrize("backend", ["redis"], indirect=True)
    async def test_finished_jobs_leave_nothing_in_redis(self, backend: Backend) -> None:
        done, failing = Job("lanes.drain", "lane-1-v1"), Job("lanes.drain", "lane-2-v1")

        async def handle(job: Job) -> None:
            if job == failing:
                raise RuntimeError("always")

        await backend.queue.enqueue(backend.name, done)
        await backend.queue.enqueue(backend.name, failing)
        client = redis.asyncio.from_url(REDIS_URL)
        try:
            async with consuming(backend.queue, [backend.name], handle):

                async def left() -> list[bytes]:
                    return [key async for key in client.scan_iter(match=f"{backend.prefix}:*")]

                async def emptied() -> bool:
                    names = {key.decode().split(":", 2)[2] for key in await left()}
                    return not names & {done.key, failing.key, "completed", "failed", "wait"}

                await eventually(emptied, timeout_s=15)
        finally:
            await client.aclose()

    async def test_enqueue_fails_fast_when_redis_cannot_be_reached(self) -> None:
        queue = RedisJobQueue(
            "redis://127.0.0.1:1/15", prefix="cf-unreachable", enqueue_timeout_s=0.5
        )
        try:
            with pytest.raises(Unavailable):
                await queue.enqueue("chain-1", Job("lanes.drain", "lane-1"))
        finally:
            await queue.close()

    async def test_worker_stops_when_redis_cannot_be_reached(self) -> None:
        queue = RedisJobQueue("redis://127.0.0.1:1/15", prefix="cf-unreachable")
        async with consuming(queue, ["chain-1"], Recorder()) as worker:
            pass
        assert worker.done()


async def _sigkill_worker_process_mid_job(backend: Backend, job: Job, tmp_path: Path) -> float:
    """Start a worker process, wait until it runs `job`, SIGKILL it; return when it died."""
    marker = tmp_path / "started"
    with (tmp_path / "worker.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "tests.contracts.queue_worker"),
            *(REDIS_URL, backend.prefix, backend.name, str(marker)),
            cwd=ROOT,
            stdout=log,
            stderr=log,
        )
    try:

        async def started() -> bool:
            return marker.exists() or process.returncode is not None

        await eventually(started, timeout_s=20)
        assert process.returncode is None, (tmp_path / "worker.log").read_text()
        assert marker.read_text() == job.key
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGKILL)
        await process.wait()
    return time.monotonic()


async def _cancel_consumer_mid_job(backend: Backend, job: Job) -> float:
    """Run a consumer whose handler hangs on `job`, cancel it mid-job; return when it died."""
    started: list[str] = []

    async def hang(job: Job) -> None:
        started.append(job.key)
        await asyncio.Event().wait()

    worker = asyncio.create_task(
        backend.queue.run_worker([backend.name], hang, concurrency=1, stop=asyncio.Event())
    )
    await eventually(lambda: _true(started == [job.key]))
    worker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await worker
    return time.monotonic()


async def _ran(recorder: Recorder, key: str) -> bool:
    return key in recorder.job_keys()


async def _true(value: object) -> bool:
    return bool(value)
