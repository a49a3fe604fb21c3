"""Job queues: the doorbell that tells workers which rows to look at (the database is the truth)."""

from chainflow.infra.queue.base import (
    JOB_STATES,
    Handler,
    Job,
    JobInterrupted,
    JobQueue,
    Payload,
    RetryPolicy,
    chain_queue,
)
from chainflow.infra.queue.inprocess import InProcessJobQueue
from chainflow.infra.queue.redis import RedisJobQueue

__all__ = [
    "JOB_STATES",
    "Handler",
    "InProcessJobQueue",
    "Job",
    "JobInterrupted",
    "JobQueue",
    "Payload",
    "RedisJobQueue",
    "RetryPolicy",
    "chain_queue",
]
