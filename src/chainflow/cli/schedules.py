"""`chainflow schedule`: list, pause and resume schedules (issue 19)."""

import uuid
from typing import TYPE_CHECKING, Annotated

import typer

from chainflow.cli.runtime import open_database, run, settings_for_cli
from chainflow.core.clock import utcnow
from chainflow.core.errors import InvalidInput

if TYPE_CHECKING:
    from chainflow.domain.schedules.models import Schedule, ScheduleStatus

app = typer.Typer(no_args_is_help=True, help="Schedules: recurring transactions and DCA swaps.")


@app.command("list")
def list_(
    status: Annotated[
        str | None, typer.Option(help="active, paused, cancelled or completed")
    ] = None,
) -> None:
    """List schedules: id, status, trigger, action, runs, next run."""
    from chainflow.domain.schedules import service
    from chainflow.infra.db.uow import unit_of_work

    settings = settings_for_cli()
    wanted = _status(status) if status is not None else None

    async def rows() -> list[str]:
        lines: list[str] = []
        cursor = None
        async with open_database(settings) as sessionmaker:
            while True:
                async with unit_of_work(sessionmaker) as session:
                    page, cursor = await service.list_schedules(
                        session, limit=500, cursor=cursor, status=wanted
                    )
                    lines.extend(_line(row) for row in page)
                if cursor is None:
                    return lines

    for line in run(rows):
        typer.echo(line)


def _status(value: str) -> "ScheduleStatus":
    from chainflow.domain.schedules.models import ScheduleStatus

    try:
        return ScheduleStatus(value)
    except ValueError:
        valid = ", ".join(s.value for s in ScheduleStatus)
        raise InvalidInput(f"unknown status {value!r}; one of {valid}") from None


def _line(row: "Schedule") -> str:
    trigger = " ".join(f"{k}={v}" for k, v in sorted(row.trigger.items()))
    nxt = row.next_run_at.isoformat() if row.next_run_at else "-"
    limit = f"/{row.max_runs}" if row.max_runs else ""
    return (
        f"{row.id}  {row.status.value}  chain={row.chain_id}  {trigger}  "
        f"action={row.action.get('type')}  runs={row.runs}{limit}  next={nxt}"
    )


def _set(schedule_id: uuid.UUID, wanted: "ScheduleStatus") -> None:
    """Pause or resume, audited as `PATCH /v1/schedules/{id}` is (`actor: "cli"`, no key),
    in the same DB transaction (audit: the command line's changes left no entry)."""
    from chainflow.domain.audit import service as audit
    from chainflow.domain.schedules import service
    from chainflow.infra.db.uow import unit_of_work

    settings = settings_for_cli()

    async def change() -> "Schedule":
        async with open_database(settings) as sessionmaker, unit_of_work(sessionmaker) as session:
            row = await service.set_status(session, schedule_id, wanted, now=utcnow())
            action = service.status_action(row)
            audit.record(session, audit.CLI, action, resource="schedule", resource_id=row.id)
            return row

    row = run(change)
    nxt = row.next_run_at.isoformat() if row.next_run_at else "-"
    typer.echo(f"schedule {row.id} is {row.status.value}; next run {nxt}")


@app.command("pause")
def pause(schedule_id: Annotated[uuid.UUID, typer.Argument(help="the schedule's id")]) -> None:
    """Pause a schedule: no occurrence runs until it is resumed."""
    from chainflow.domain.schedules.models import ScheduleStatus

    _set(schedule_id, ScheduleStatus.PAUSED)


@app.command("resume")
def resume(schedule_id: Annotated[uuid.UUID, typer.Argument(help="the schedule's id")]) -> None:
    """Resume a paused schedule from its next occurrence (missed ones are not caught up)."""
    from chainflow.domain.schedules.models import ScheduleStatus

    _set(schedule_id, ScheduleStatus.ACTIVE)
