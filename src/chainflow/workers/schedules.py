"""The schedule pass of a chain's loop: record how runs ended, then start due occurrences.

At most once per `ScheduleConfig.poll_s` per chain and process, before the round reads its
lanes, so a run's transaction is drained in the same round as it is created.
"""

import time
from datetime import datetime, timedelta

from chainflow.core.clock import utcnow
from chainflow.core.crashpoints import CrashPoint
from chainflow.domain.schedules import outcomes, runner
from chainflow.domain.schedules.dca import DcaBuilder
from chainflow.infra.db.uow import read_only, unit_of_work
from chainflow.workers.engine import Engine


async def run_schedules(engine: Engine, chain_id: int, *, force: bool = False) -> int:
    """One pass if it is due (or `force`); returns the runs that made a transaction."""
    ports, state = engine.ports, engine.state
    now_s = time.monotonic()
    last = state.schedules_read_at.get(chain_id)
    if not force and last is not None and now_s - last < ports.schedules.poll_s:
        return 0
    state.schedules_read_at[chain_id] = now_s
    return await schedule_pass(engine, chain_id)


async def schedule_pass(engine: Engine, chain_id: int, *, now: datetime | None = None) -> int:
    """Record finished runs, then start due occurrences as of `now` (the clock's, unless a
    test gives it).

    A read-only look comes first, and only the steps it finds work for open a (write)
    transaction: on SQLite every unit of work is a turn on the one writer, and a chain with
    no schedules used to take two such turns per `poll_s` (issue 19).
    """
    ports = engine.ports
    async with read_only(ports.sessionmaker) as session:
        work = await runner.work_of(session, chain_id, now=now or utcnow())
    if work.finish:
        async with unit_of_work(ports.sessionmaker) as session:
            await outcomes.finish_runs(session, chain_id, now=now or utcnow())
    if not work.start:
        return 0
    async with unit_of_work(ports.sessionmaker) as session:
        result = await runner.start_due(
            session,
            chain_id,
            now=now or utcnow(),
            grace=timedelta(seconds=ports.schedules.misfire_grace_s),
            builders={"dca_swap": DcaBuilder(engine.rpc(chain_id))},
        )
        if result.started or result.recorded:
            ports.crasher.reached(CrashPoint.SCHEDULE_RUNS_STORED)
    return len(result.started)
