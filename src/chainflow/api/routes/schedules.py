"""Routes of schedules (DESIGN §13 "Schedules", issue 19)."""

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, status

from chainflow.api.deps import ResourcesDep, SchedulesKey, actor, unrestricted_only
from chainflow.api.responses import problem_responses
from chainflow.core.clock import utcnow
from chainflow.core.errors import Unavailable
from chainflow.domain.apikeys import service as apikeys
from chainflow.domain.audit import service as audit
from chainflow.domain.chains import service as chains
from chainflow.domain.schedules import service
from chainflow.domain.schedules.models import ScheduleStatus
from chainflow.domain.schedules.schemas import (
    DcaAction,
    RunList,
    RunRead,
    ScheduleCreate,
    ScheduleList,
    ScheduleRead,
    ScheduleUpdate,
)
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.rpc.client import RpcClient

router = APIRouter(
    prefix="/v1/schedules",
    tags=["schedules"],
    dependencies=[unrestricted_only("manage schedules")],  # issue 21
)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def create_schedule(
    request: Request, body: ScheduleCreate, resources: ResourcesDep, key: SchedulesKey
) -> ScheduleRead:
    """A recurring transaction or DCA swap; each occurrence runs once (its runs list why not).
    Its runs send transactions as this key, so it needs `transactions:write` (or admin) too."""
    if not apikeys.may_send(key):
        raise apikeys.InsufficientScope(
            "this API key lacks the 'transactions:write' scope, which creating a schedule needs"
            " as well as 'schedules': its runs send transactions"
        )
    settings = resources.settings
    has_code = None
    if isinstance(body.action, DcaAction):
        has_code = await _code_check(resources, body.chain_id)
    async with unit_of_work(resources.sessionmaker) as session:
        row = await service.create_schedule(
            session,
            body,
            api_key_id=key.id,
            now=utcnow(),
            min_interval_s=settings.schedule_min_interval_s,
            has_code=has_code,
        )
        audit.record(
            session,
            actor(request, key),
            "schedule.created",
            resource="schedule",
            resource_id=row.id,
        )
        view = ScheduleRead.of(row)
    if row.approval_tx_id is not None:  # the approve before the first swap is queued
        await resources.doorbells.ring(row.chain_id, row.wallet_id)
    return view


async def _code_check(resources: ResourcesDep, chain_id: int) -> service.CodeCheck:
    async with unit_of_work(resources.sessionmaker) as session:
        try:
            chain = await chains.get_chain(session, chain_id)
            urls = chain.rpc_urls
        except Exception:
            urls = []  # an unknown chain is refused by create_schedule
    if not urls:
        return _no_check

    settings = resources.settings
    rpc = RpcClient(
        resources.http,
        urls[0],
        timeout_s=settings.rpc_timeout_s,
        max_response_bytes=settings.rpc_max_response_bytes,
    )

    async def has_code(address: str) -> bool:
        try:
            code = await rpc.call("eth_getCode", [address, "latest"])
        except Exception as exc:
            raise Unavailable(f"chain {chain_id}'s node did not answer eth_getCode") from exc
        return isinstance(code, str) and len(code) > 2

    return has_code


async def _no_check(_address: str) -> bool:
    return True


@router.get("", responses=problem_responses(401, 403, 422))
async def list_schedules(
    resources: ResourcesDep,
    _key: SchedulesKey,
    status_: Annotated[ScheduleStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> ScheduleList:
    async with unit_of_work(resources.sessionmaker) as session:
        rows, next_cursor = await service.list_schedules(
            session, limit=limit, cursor=cursor, status=status_
        )
        return ScheduleList(items=[ScheduleRead.of(r) for r in rows], next_cursor=next_cursor)


@router.get("/{schedule_id}", responses=problem_responses(401, 403, 404))
async def get_schedule(
    schedule_id: uuid.UUID, resources: ResourcesDep, _key: SchedulesKey
) -> ScheduleRead:
    async with unit_of_work(resources.sessionmaker) as session:
        return ScheduleRead.of(await service.get_schedule(session, schedule_id))


@router.patch("/{schedule_id}", responses=problem_responses(401, 403, 404, 409, 422))
async def update_schedule(
    request: Request,
    schedule_id: uuid.UUID,
    body: ScheduleUpdate,
    resources: ResourcesDep,
    key: SchedulesKey,
) -> ScheduleRead:
    """Pause or resume; a resumed schedule goes on from its next occurrence (no catch-up)."""
    async with unit_of_work(resources.sessionmaker) as session:
        row = await service.set_status(
            session, schedule_id, ScheduleStatus(body.status), now=utcnow()
        )
        action = service.status_action(row)
        audit.record(session, actor(request, key), action, resource="schedule", resource_id=row.id)
        return ScheduleRead.of(row)


@router.delete("/{schedule_id}", responses=problem_responses(401, 403, 404, 409))
async def cancel_schedule(
    request: Request, schedule_id: uuid.UUID, resources: ResourcesDep, key: SchedulesKey
) -> ScheduleRead:
    """Cancel: no more runs; a pending run's transaction goes on (cancel it by its id)."""
    async with unit_of_work(resources.sessionmaker) as session:
        row = await service.set_status(session, schedule_id, ScheduleStatus.CANCELLED, now=utcnow())
        audit.record(
            session,
            actor(request, key),
            "schedule.cancelled",
            resource="schedule",
            resource_id=row.id,
        )
        return ScheduleRead.of(row)


@router.get("/{schedule_id}/runs", responses=problem_responses(401, 403, 404, 422))
async def list_runs(
    schedule_id: uuid.UUID,
    resources: ResourcesDep,
    _key: SchedulesKey,
    order: Annotated[Literal["asc", "desc"], Query(description="by occurrence")] = "asc",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> RunList:
    """Every occurrence so far, oldest first (`order=desc`: newest first): its transaction,
    outcome and, if skipped, why."""
    async with unit_of_work(resources.sessionmaker) as session:
        rows, next_cursor = await service.list_runs(
            session, schedule_id, limit=limit, cursor=cursor, newest_first=order == "desc"
        )
        return RunList(items=[RunRead.of(r) for r in rows], next_cursor=next_cursor)
