"""Job name → handler: what a worker does when a doorbell rings. A doorbell only wakes the
chain's loop, whose next round drains every lane with work in one batch; a lost or repeated
one changes nothing (the loop polls the database anyway)."""

from chainflow.core.logging import get_logger
from chainflow.domain.transactions.doorbell import DRAIN_JOB
from chainflow.infra.queue import Handler, Job
from chainflow.workers.engine import Engine

log = get_logger(__name__)


def handler_for(engine: Engine) -> Handler:
    """The dispatcher of this worker's jobs."""

    async def handle(job: Job) -> None:
        if job.name != DRAIN_JOB:
            log.warning("job.unknown", job_name=job.name)
            return
        engine.wake(int(job.payload["chain_id"]))

    return handle
