"""A schedule pass with nothing to do is one read: on SQLite it takes no turn on the one
writer (each chain's loop runs a pass every CHAINFLOW_SCHEDULE_POLL_S, schedules or not)."""

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from chainflow.domain.schedules import service
from chainflow.domain.schedules.models import RunStatus
from chainflow.domain.schedules.schemas import ScheduleCreate
from chainflow.infra.db.uow import unit_of_work
from chainflow.workers.schedules import schedule_pass
from tests.support.chains import ANVIL_CHAIN_ID
from tests.support.engine import EngineHarness

T0 = datetime(2030, 1, 1, tzinfo=UTC)


@contextmanager
def statements_of(harness: EngineHarness) -> Iterator[list[str]]:
    """Every SQL statement the harness's engine sends meanwhile (BEGINs included on SQLite)."""
    engine = harness.sessionmaker.kw["bind"]
    assert isinstance(engine, AsyncEngine)
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(" ".join(statement.split()).upper())

    event.listen(engine.sync_engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", note)


WRITES = ("INSERT", "UPDATE", "DELETE", "BEGIN IMMEDIATE")


async def test_a_pass_with_no_schedules_is_one_read(harness: EngineHarness) -> None:
    with statements_of(harness) as seen:
        assert await schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=T0) == 0
    selects = [s for s in seen if s.startswith("SELECT")]
    assert len(selects) == 1, seen
    assert "FOR UPDATE" not in selects[0]
    assert not [s for s in seen if s.startswith(WRITES)], seen


async def test_a_due_schedule_still_runs_after_the_read(harness: EngineHarness) -> None:
    wallet = await harness.wallet()
    body = ScheduleCreate.model_validate(
        {
            "wallet": str(wallet.id),
            "chain_id": ANVIL_CHAIN_ID,
            "trigger": {"interval_s": 60},
            "start_at": T0.isoformat(),
            "max_runs": 1,
            "action": {"type": "transaction", "to": wallet.address, "value": "1"},
        }
    )
    async with unit_of_work(harness.sessionmaker) as session:
        row = await service.create_schedule(
            session, body, api_key_id=None, now=T0, min_interval_s=1
        )
    assert await schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=T0) == 1
    async with unit_of_work(harness.sessionmaker) as session:
        (run,) = (await service.list_runs(session, row.id, limit=10, cursor=None))[0]
    assert run.status is RunStatus.PENDING
    (tx,) = await harness.run_until_final([run.transaction_id])  # type: ignore[list-item]
    with statements_of(harness) as seen:
        await schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=T0)  # records the outcome
    assert [s for s in seen if s.startswith("UPDATE SCHEDULE_RUNS")], seen
    async with unit_of_work(harness.sessionmaker) as session:
        (run,) = (await service.list_runs(session, row.id, limit=10, cursor=None))[0]
    assert (run.status, tx.status.value) == (RunStatus.SUCCEEDED, "confirmed")


@pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)
async def test_an_idle_pass_neither_waits_for_nor_holds_the_sqlite_writer(
    harness: EngineHarness, database_url: str
) -> None:
    """Another connection holds SQLite's write lock: an idle pass still ends at once (a pass
    that began IMMEDIATE would wait out the 30 s busy timeout)."""
    path = make_url(database_url).database
    assert path
    writer = sqlite3.connect(path, isolation_level=None, timeout=0.1)
    try:
        writer.execute("BEGIN IMMEDIATE")
        await asyncio.wait_for(schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=T0), 10)
        writer.execute("ROLLBACK")
    finally:
        writer.close()
