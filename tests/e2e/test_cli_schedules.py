"""`chainflow schedule list|pause|resume` as users run them (a real process, SQLite). The
database is prepared in this process: only the commands under test pay a process start."""

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

from chainflow.cli.runtime import migrate, open_database
from chainflow.core.settings import Settings
from chainflow.domain.apikeys import service as apikeys
from chainflow.domain.audit import service as audit
from chainflow.domain.chains import service as chains
from chainflow.domain.chains.seed import load_seed
from chainflow.domain.master_key import foreign_key_ids
from chainflow.domain.schedules import service
from chainflow.domain.schedules.models import ScheduleStatus
from chainflow.domain.schedules.schemas import ScheduleCreate
from chainflow.domain.wallets import service as wallets
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.signing.keystore import MasterKey
from chainflow.infra.signing.local import generate_private_key
from tests.e2e.test_cli import Cli, one_error_line
from tests.support.engine import SINK


async def _schedule(
    settings: Settings, *, owner_revoked: bool = False, valid_until_passed: bool = False
) -> str:
    """A schedule; `owner_revoked`: created under an API key then revoked, and paused;
    `valid_until_passed`: paused, then its action's valid_until passed."""
    async with open_database(settings) as sessionmaker, unit_of_work(sessionmaker) as session:
        await chains.seed_chains(session, load_seed(settings.chains_file))
        wallet = await wallets.import_wallet(
            session,
            generate_private_key(),
            master=MasterKey.generate(),
            chain_ids=[31337],
            sealed_rows=foreign_key_ids,
        )
        body = ScheduleCreate.model_validate(
            {
                "wallet": str(wallet.id),
                "chain_id": 31337,
                "trigger": {"cron": "0 9 * * 1-5", "timezone": "Europe/Berlin"},
                "action": {"type": "transaction", "to": SINK, "value": "1"},
            }
        )
        key_id = None
        if owner_revoked:
            key, _ = await apikeys.create_api_key(session, ["schedules", "transactions:write"])
            key_id = key.id
        row = await service.create_schedule(
            session, body, api_key_id=key_id, now=datetime.now(UTC), min_interval_s=10
        )
        if key_id is not None or valid_until_passed:
            await service.set_status(session, row.id, ScheduleStatus.PAUSED, now=datetime.now(UTC))
        if key_id is not None:
            await apikeys.revoke_api_key(session, key_id)
        if valid_until_passed:  # as if time had passed while it was paused
            row.action = row.action | {"valid_until": "2001-01-01T00:00:00Z"}
        return str(row.id)


def test_list_pause_resume(tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = Settings(data_dir=data, database_url=None)
    migrate(settings)
    schedule_id = asyncio.run(_schedule(settings))
    cli = Cli(data)

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
    # Each change is in the audit log as the API's are, by the command line (no key).
    entries = asyncio.run(_audit(settings, schedule_id))
    assert entries == [("cli", None, "schedule.paused"), ("cli", None, "schedule.resumed")]


async def _audit(settings: Settings, schedule_id: str) -> list[tuple[str, object, str]]:
    async with open_database(settings) as sessionmaker, unit_of_work(sessionmaker) as session:
        rows, _ = await audit.list_entries(
            session, limit=10, cursor=None, where=audit.AuditFilter(resource_id=schedule_id)
        )
        return [(row.actor, row.key_id, row.action) for row in rows]


def _paused(tmp_path: Path, **why: bool) -> tuple[Cli, str]:
    """The command line and a paused schedule that cannot be resumed (`_schedule`'s flags)."""
    data = tmp_path / "data"
    settings = Settings(data_dir=data, database_url=None)
    migrate(settings)
    return Cli(data), asyncio.run(_schedule(settings, **why))


def test_resume_under_a_revoked_owner_key_is_one_error_line(tmp_path: Path) -> None:
    """Its next run would only pause it again: refused, exit 1, the schedule left paused."""
    cli, schedule_id = _paused(tmp_path, owner_revoked=True)

    refused = one_error_line(cli("schedule", "resume", schedule_id))
    assert refused == (
        f"error: schedule {schedule_id} cannot be resumed: its owner API key is revoked; "
        "create a new schedule under a live key"
    )
    listed = cli("schedule", "list")
    assert listed.stdout.startswith(f"{schedule_id}  paused  "), listed.stdout


def test_resume_after_the_actions_valid_until_is_one_error_line(tmp_path: Path) -> None:
    """Every run would expire unsigned: refused, exit 1, the schedule left paused."""
    cli, schedule_id = _paused(tmp_path, valid_until_passed=True)

    refused = one_error_line(cli("schedule", "resume", schedule_id))
    assert refused.startswith(
        f"error: schedule {schedule_id} cannot be resumed: its action.valid_until "
        "2001-01-01T00:00:00+00:00 is not after its next run "
    )
    assert refused.endswith("; create a new schedule with a later valid_until")
    listed = cli("schedule", "list")
    assert listed.stdout.startswith(f"{schedule_id}  paused  "), listed.stdout
