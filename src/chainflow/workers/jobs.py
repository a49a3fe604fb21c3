"""Job name → handler: what a worker does when a doorbell rings. Every handler is safe to run
twice (a drain re-reads the lane under its lock)."""

import uuid

from chainflow.core.logging import get_logger
from chainflow.domain.chains import service as chains
from chainflow.domain.transactions.doorbell import DRAIN_JOB
from chainflow.domain.transactions.executor import drain_lane
from chainflow.domain.transactions.runtime import ChainConfig, Engine
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.queue import Handler, Job

log = get_logger(__name__)


def handler_for(engine: Engine) -> Handler:
    """The dispatcher of this worker's jobs."""

    async def handle(job: Job) -> None:
        if job.name != DRAIN_JOB:
            log.warning("job.unknown", job_name=job.name)
            return
        chain_id = int(job.payload["chain_id"])
        if chain_id not in engine.rpc:
            return  # a worker restricted to other chains
        async with unit_of_work(engine.sessionmaker) as session:
            chain = ChainConfig.of(await chains.get_chain(session, chain_id))
        await drain_lane(engine, chain, uuid.UUID(str(job.payload["wallet_id"])))

    return handle
