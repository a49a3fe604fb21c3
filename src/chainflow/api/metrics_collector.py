"""What an API process reads for its scrape: lanes and webhook backlogs from the database and
doorbell jobs from the queue, at most once per `CHAINFLOW_METRICS_CACHE_S` whatever the scrape
rate (issue 18)."""

import asyncio
import time
from typing import get_args

from chainflow.api.resources import Resources
from chainflow.core.logging import get_logger
from chainflow.domain.transactions.lane_stats import LaneStats, lane_stats
from chainflow.domain.wallets.schemas import PausedReason
from chainflow.domain.webhooks import service as webhooks
from chainflow.infra import metrics
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.queue import chain_queue

log = get_logger(__name__)


class LaneCollector:
    """Refreshes the lane, webhook and queue gauges of this process; one read at a time."""

    def __init__(self, cache_s: float) -> None:
        self.cache_s = cache_s
        self._read_at = -float("inf")
        self._lock = asyncio.Lock()

    async def refresh(self, resources: Resources) -> None:
        """Read again if the last read is older than `cache_s`; a failed read keeps the last
        values (the scrape still answers, with the process's own metrics)."""
        async with self._lock:
            if time.monotonic() - self._read_at < self.cache_s:
                return
            self._read_at = time.monotonic()
            try:
                await self._read(resources)
            except Exception as exc:  # metrics must not fail the scrape
                log.warning("metrics.read_failed", error=repr(exc)[:300])

    async def _read(self, resources: Resources) -> None:
        async with unit_of_work(resources.sessionmaker) as session:
            lanes = await lane_stats(session)
            hooks = await webhooks.backlogs(session)
        metrics.set_webhooks(
            [
                metrics.WebhookBacklog(
                    webhook_id=str(hook.endpoint_id),
                    enabled=hook.enabled,
                    pending=hook.pending,
                    oldest_pending_at=(
                        hook.oldest_pending_at.timestamp() if hook.oldest_pending_at else None
                    ),
                )
                for hook in hooks
            ]
        )
        metrics.set_lanes(
            [
                metrics.LaneRow(
                    chain_id=lane.chain_id,
                    wallet=lane.wallet,
                    queued=lane.queued,
                    in_flight=lane.in_flight,
                    oldest_pending_at=(
                        lane.oldest_pending_at.timestamp() if lane.oldest_pending_at else None
                    ),
                )
                for lane in lanes
            ],
            _paused(lanes),
        )
        queues = [chain_queue(chain_id) for chain_id in sorted({lane.chain_id for lane in lanes})]
        async with asyncio.timeout(2):
            metrics.set_queue_jobs(await resources.doorbells.queue.job_counts(queues))


def _paused(lanes: list[LaneStats]) -> dict[tuple[int, str], int]:
    """How many lanes of each chain show each paused_reason, 0 included (a series that
    drops to 0 instead of vanishing); a reason stored but unknown is left out, as the
    lane's API shows it null."""
    reasons = get_args(PausedReason)
    counts = {(lane.chain_id, reason): 0 for lane in lanes for reason in reasons}
    for lane in lanes:
        if lane.paused_reason in reasons:
            counts[(lane.chain_id, lane.paused_reason)] += 1
    return counts
