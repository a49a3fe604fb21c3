"""The job queue contract: a doorbell that names work whose truth lives in the database.

Delivery is at least once. A job may run twice (a retry after a crash, a sweeper re-dispatch),
so every handler must be safe to run twice. The queue may also lose a job (Redis flushed, a
process killed in the embedded shape); the database sweeper re-enqueues such work.

A job's `key` is its deduplication id: while a job with that key is waiting, delayed, retrying
or running in a queue, enqueueing the same key again is a no-op that returns False. Once the job
has finished (succeeded, or failed for the last time), the key is free again.
"""

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias

from chainflow.core.logging import get_logger

Payload: TypeAlias = Mapping[str, str | int]
Handler: TypeAlias = Callable[["Job"], Awaitable[None]]

log = get_logger(__name__)

_NAME = re.compile(r"[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*")
# BullMQ stores a job under `<prefix>:<queue>:<id>`: a ':' would split the key, and an all-digit
# id collides with the ids BullMQ generates itself (docs.bullmq.io, "Job Ids").
_KEY = re.compile(r"[^\s:]{1,256}")
_QUEUE = re.compile(r"[A-Za-z0-9_.-]{1,128}")


def chain_queue(chain_id: int) -> str:
    """Name the queue that carries one chain's jobs."""
    return f"chain-{chain_id}"


def check_queue_name(queue: str) -> str:
    """Return `queue` if it is a valid queue name. Raises: ValueError."""
    if not _QUEUE.fullmatch(queue):
        raise ValueError(f"queue name must match {_QUEUE.pattern}: {queue!r}")
    return queue


@dataclass(frozen=True)
class Job:
    """A doorbell: what to do (`name`), for which row (`key`), and a few ids (`payload`)."""

    name: str
    key: str
    payload: Payload = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"job name must be noun.verb in lower case: {self.name!r}")
        if not _KEY.fullmatch(self.key) or self.key.isdigit():
            raise ValueError(
                f"job key must be 1-256 chars, no ':' or space, not all digits: {self.key!r}"
            )
        for name, value in self.payload.items():
            if (
                not isinstance(name, str)
                or isinstance(value, bool)
                or not isinstance(value, str | int)
            ):
                raise ValueError(f"payload maps str to str or int: {name!r}={value!r}")
        object.__setattr__(self, "payload", dict(self.payload))


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failing job runs, and how long it waits between runs (doubling)."""

    attempts: int = 5
    base_delay_s: float = 1.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base_delay_s < 0:
            raise ValueError("attempts must be >= 1 and base_delay_s >= 0")

    def delay_s(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return self.base_delay_s * 2.0 ** (attempt - 1)


class JobInterrupted(Exception):
    """A handler raised CancelledError while its worker was not cancelled; retried as a failure."""


class JobQueue(Protocol):
    """Named queues of jobs, and consumers that run a handler for each delivered job."""

    async def enqueue(self, queue: str, job: Job, *, delay_s: float = 0) -> bool:
        """Queue `job` to run after `delay_s`; False if its key is already queued or running.

        Raises:
            Unavailable: the backend cannot be reached (the sweeper covers the lost doorbell).
        """
        ...

    async def run_worker(
        self, queues: Sequence[str], handler: Handler, *, concurrency: int, stop: asyncio.Event
    ) -> None:
        """Run `handler` on jobs from `queues`, at most `concurrency` at once per queue.

        Returns once `stop` is set and the running handlers have finished. A failing handler is
        retried by the queue's RetryPolicy, then logged as `job.failed` and dropped.
        """
        ...

    async def close(self) -> None:
        """Release connections; enqueue fails afterwards."""
        ...

    async def job_counts(self, queues: Sequence[str]) -> dict[str, int]:
        """Jobs of `queues` by state (waiting, active, delayed, failed), for the metrics."""
        ...


JOB_STATES = ("waiting", "active", "delayed", "failed")


def log_failure(job: Job, queue: str, error: BaseException, *, attempt: int, attempts: int) -> None:
    """Log a failed run: a warning if it will be retried, an error if the job is dropped."""
    will_retry = attempt < attempts
    emit = log.warning if will_retry else log.error
    emit(
        "job.failed",
        queue=queue,
        job_name=job.name,
        job_key=job.key,
        attempt=attempt,
        attempts=attempts,
        will_retry=will_retry,
        error=repr(error)[:500],
    )


def is_being_cancelled() -> bool:
    """True if the current task was asked to cancel (not merely hit a stray CancelledError)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
