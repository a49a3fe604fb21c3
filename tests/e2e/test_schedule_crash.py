"""A worker SIGKILLed after it stored schedule runs and their transactions, before the
commit (crash point `schedule_runs_stored`), on PostgreSQL: nothing of that pass remains, and
the next worker runs every occurrence once (issue 19). In scripts/chaos; CI runs the same crash
point in process (tests/integration/schedules/test_runs.py)."""

import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from chainflow.core.crashpoints import CrashPoint
from chainflow.domain.schedules import service
from chainflow.domain.schedules.models import RunStatus, ScheduleRun
from chainflow.domain.schedules.schemas import ScheduleCreate
from chainflow.domain.transactions.models import Transaction
from chainflow.domain.transactions.state import TxStatus
from chainflow.infra.db.engine import create_engine, create_sessionmaker
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.signing.keystore import MasterKey
from tests.e2e.test_concurrency import master_env
from tests.e2e.test_crash_points import anvil, crashing_worker, died, prepare
from tests.support.chains import ANVIL_CHAIN_ID
from tests.support.databases import REDIS_URL
from tests.support.engine import SINK
from tests.support.polling import eventually
from tests.support.processes import base_env, processes

__all__ = ["anvil"]  # the fixture, shared with the pipeline's crash tests
SCHEDULES = 5


@pytest.mark.chaos_full  # ~30 s of process starts; CI covers the same commit in process
@pytest.mark.timeout(300)
@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
async def test_sigkill_before_the_runs_commit_then_each_occurrence_runs_once(
    database_url: str, anvil: str, tmp_path: Path
) -> None:
    master = MasterKey.generate()
    wallet, _token = await prepare(database_url, anvil, master)
    db = create_engine(database_url)
    sessionmaker = create_sessionmaker(db)
    created = datetime.now(UTC) - timedelta(minutes=1)
    at = datetime.now(UTC) - timedelta(seconds=1)  # due now, well within the misfire grace
    try:
        async with unit_of_work(sessionmaker) as session:
            for index in range(SCHEDULES):
                body = ScheduleCreate.model_validate(
                    {
                        "wallet": wallet,
                        "chain_id": ANVIL_CHAIN_ID,
                        "trigger": {"at": at.isoformat()},
                        "action": {"type": "transaction", "to": SINK, "value": str(index + 1)},
                    }
                )
                await service.create_schedule(
                    session, body, api_key_id=None, now=created, min_interval_s=10
                )
        env = base_env(
            database_url=database_url,
            redis_url=REDIS_URL,
            master_key=master_env(master),
            log_format="json",
            log_level="warning",
        )
        with crashing_worker(
            env, CrashPoint.SCHEDULE_RUNS_STORED, tmp_path / "crashed.log"
        ) as doomed:
            assert await died(doomed) == -signal.SIGKILL
        assert "crash point schedule_runs_stored reached" in (tmp_path / "crashed.log").read_text()
        async with unit_of_work(sessionmaker) as session:
            assert await session.scalar(select(func.count()).select_from(ScheduleRun)) == 0
            assert await session.scalar(select(func.count()).select_from(Transaction)) == 0

        async def all_succeeded() -> list[ScheduleRun] | None:
            async with unit_of_work(sessionmaker) as session:
                runs = list((await session.scalars(select(ScheduleRun))).all())
            done = len(runs) == SCHEDULES and all(r.status is RunStatus.SUCCEEDED for r in runs)
            return runs if done else None

        (tmp_path / "second").mkdir()
        with processes([["worker"]], env, tmp_path / "second"):
            runs = await eventually(all_succeeded, timeout_s=120, interval_s=0.2)
        async with unit_of_work(sessionmaker) as session:
            txs = list((await session.scalars(select(Transaction))).all())
        assert len({r.schedule_id for r in runs}) == SCHEDULES
        assert sorted(tx.value_wei for tx in txs) == list(range(1, SCHEDULES + 1))
        assert {tx.status for tx in txs} == {TxStatus.CONFIRMED}
        assert {tx.id for tx in txs} == {r.transaction_id for r in runs}
    finally:
        await db.dispose()
