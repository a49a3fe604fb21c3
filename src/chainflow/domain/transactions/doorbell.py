"""Doorbells: tell workers a lane has new work. Only a hint: the rows in the database are the
truth and every worker round re-reads them, so a lost or duplicated doorbell changes nothing."""

import time
import uuid

from chainflow.core.logging import get_logger
from chainflow.infra.queue import Job, JobQueue, chain_queue

DRAIN_JOB = "lanes.drain"
log = get_logger(__name__)


def drain_job(chain_id: int, wallet_id: uuid.UUID) -> Job:
    """A wake-up of the chain's worker loop, whose round drains every lane with work: one job
    per chain at a time, whichever lane rang (its wallet rides along for the logs)."""
    return Job(
        DRAIN_JOB,
        key=f"wake-{chain_id}",
        payload={"chain_id": chain_id, "wallet_id": str(wallet_id)},
    )


async def ring_lane(queue: JobQueue, chain_id: int, wallet_id: uuid.UUID) -> None:
    """Enqueue a drain of this lane; never fails the caller (the workers' sweep covers it)."""
    try:
        await queue.enqueue(chain_queue(chain_id), drain_job(chain_id, wallet_id))
    except Exception as exc:  # the doorbell is best effort by design
        log.warning("doorbell.lost", chain_id=chain_id, error=repr(exc)[:200])


class Doorbells:
    """Rings chains from one process, at most once per chain per `window_s`.

    A ring wakes a worker's round for the whole chain, so under a burst every request would
    ring the same deduplicated job; skipping the rings inside the window saves a queue round
    trip each, and costs at most one worker poll of delay: every worker round re-reads the
    lanes with queued rows anyway.
    """

    def __init__(self, queue: JobQueue, *, window_s: float = 0.05) -> None:
        self.queue = queue
        self.window_s = window_s
        self._rung: dict[int, float] = {}

    async def ring(self, chain_id: int, wallet_id: uuid.UUID) -> None:
        now = time.monotonic()
        last = self._rung.get(chain_id)
        if last is not None and now - last < self.window_s:
            return
        self._rung[chain_id] = now
        await ring_lane(self.queue, chain_id, wallet_id)
