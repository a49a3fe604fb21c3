"""`chainflow schedule list|pause|resume` as users run them (a real process, SQLite)."""

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

from chainflow.core.settings import Settings
from chainflow.domain.schedules import service
from chainflow.domain.schedules.schemas import ScheduleCreate
from chainflow.infra.db.engine import create_engine, create_sessionmaker
from chainflow.infra.db.uow import unit_of_work
from tests.e2e.test_cli import Cli, one_error_line
from tests.support.engine import SINK


async def _schedule(data_dir: Path, wallet: str) -> str:
    url = Settings(data_dir=data_dir).resolved_database_url
    db = create_engine(url)
    body = ScheduleCreate.model_validate(
        {
            "wallet": wallet,
            "chain_id": 31337,
            "trigger": {"cron": "0 9 * * 1-5", "timezone": "Europe/Berlin"},
            "action": {"type": "transaction", "to": SINK, "value": "1"},
        }
    )
    try:
        async with unit_of_work(create_sessionmaker(db)) as session:
            row = await service.create_schedule(
                session, body, api_key_id=None, now=datetime.now(UTC), min_interval_s=10
            )
            return str(row.id)
    finally:
        await db.dispose()


def test_list_pause_resume(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cli = Cli(data)
    assert cli("db", "upgrade").returncode == 0
    generated = cli("wallet", "generate", "--chain-id", "31337")
    assert generated.returncode == 0, generated.stderr
    wallet = generated.stdout.split()[1]
    schedule_id = asyncio.run(_schedule(data, wallet))

    listed = cli("schedule", "list")
    assert listed.returncode == 0, listed.stderr
    (line,) = listed.stdout.splitlines()
    assert line.startswith(f"{schedule_id}  active  chain=31337  cron=0 9 * * 1-5")
    assert "timezone=Europe/Berlin  action=transaction  runs=0" in line

    paused = cli("schedule", "pause", schedule_id)
    assert (
        paused.stdout.strip()
        == f"schedule {schedule_id} is paused; next run " + (line.split("next=")[1])
    )
    resumed = cli("schedule", "resume", schedule_id)
    assert resumed.stdout.startswith(f"schedule {schedule_id} is active; next run 20")

    missing = one_error_line(cli("schedule", "pause", str(uuid.uuid4())))
    assert "does not exist" in missing
