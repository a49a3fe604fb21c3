"""Doorbells: tell workers a lane has new work. Only a hint: the rows in the database are the
truth and every worker round re-reads them, so a lost or duplicated doorbell changes nothing."""

import uuid

from chainflow.core.logging import get_logger
from chainflow.infra.queue import Job, JobQueue, chain_queue

DRAIN_JOB = "lanes.drain"
log = get_logger(__name__)


def drain_job(chain_id: int, wallet_id: uuid.UUID) -> Job:
    return Job(
        DRAIN_JOB,
        key=f"lane-{wallet_id}-{chain_id}",
        payload={"chain_id": chain_id, "wallet_id": str(wallet_id)},
    )


async def ring_lane(queue: JobQueue, chain_id: int, wallet_id: uuid.UUID) -> None:
    """Enqueue a drain of this lane; never fails the caller (the workers' sweep covers it)."""
    try:
        await queue.enqueue(chain_queue(chain_id), drain_job(chain_id, wallet_id))
    except Exception as exc:  # the doorbell is best effort by design
        log.warning("doorbell.lost", chain_id=chain_id, error=repr(exc)[:200])
