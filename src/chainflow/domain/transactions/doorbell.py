"""Doorbells: tell workers a lane has new work. Only a hint: the rows in the database are the
truth and every worker round re-reads them, so a lost or duplicated doorbell changes nothing."""

import asyncio
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


class Doorbells:
    """Rings chains from one process, at most once per chain per `window_s`, in the
    background: a caller (an API request that has committed its rows) never waits for the
    queue, even one that hangs.

    A ring wakes a worker's round for the whole chain, so under a burst every request would
    ring the same deduplicated job; skipping the rings inside the window, and while the
    chain's last ring is still on its way, saves a queue round trip each and costs at most one
    worker poll of delay: every worker round re-reads the lanes with queued rows anyway. While
    the queue fails, rings are skipped for `backoff_s` after each failure and the outage is
    logged once, not once per request.
    """

    def __init__(self, queue: JobQueue, *, window_s: float = 0.05, backoff_s: float = 1.0) -> None:
        self.queue = queue
        self.window_s = window_s
        self.backoff_s = backoff_s
        self._rung: dict[int, float] = {}
        self._pending: dict[int, asyncio.Task[None]] = {}
        self._failing_since: float | None = None
        self._retry_at = 0.0

    async def ring(self, chain_id: int, wallet_id: uuid.UUID) -> None:
        now = time.monotonic()
        if now < self._retry_at:
            return
        last = self._rung.get(chain_id)
        if last is not None and now - last < self.window_s:
            return
        running = self._pending.get(chain_id)
        if running is not None and not running.done():
            return
        self._rung[chain_id] = now
        self._pending[chain_id] = asyncio.create_task(self._ring(chain_id, wallet_id))

    async def settle(self) -> None:
        """Wait for the rings on their way (shutdown and tests)."""
        await asyncio.gather(*self._pending.values(), return_exceptions=True)

    async def _ring(self, chain_id: int, wallet_id: uuid.UUID) -> None:
        try:
            await self.queue.enqueue(chain_queue(chain_id), drain_job(chain_id, wallet_id))
        except Exception as exc:  # the doorbell is best effort by design
            self._retry_at = time.monotonic() + self.backoff_s
            if self._failing_since is None:
                self._failing_since = time.monotonic()
                log.warning("doorbell.lost", chain_id=chain_id, error=repr(exc)[:200])
            return
        if self._failing_since is not None:
            down_s = round(time.monotonic() - self._failing_since, 1)
            log.info("doorbell.restored", chain_id=chain_id, down_s=down_s)
            self._failing_since = None
