"""GET /v1/audit: the audit log, for admin keys (issue 21)."""

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from chainflow.api.deps import AdminKey, SessionmakerDep
from chainflow.api.responses import problem_responses
from chainflow.core.errors import InvalidInput
from chainflow.core.fields import NoNulStr
from chainflow.domain.apikeys.restrictions import restrictions_of
from chainflow.domain.audit import service
from chainflow.domain.audit.schemas import AuditList, AuditRead
from chainflow.infra.db.uow import unit_of_work

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get("", responses=problem_responses(401, 403, 422))
async def list_audit(
    sessionmaker: SessionmakerDep,
    key: AdminKey,
    action: Annotated[NoNulStr | None, Query(max_length=64)] = None,
    resource: Annotated[NoNulStr | None, Query(max_length=32)] = None,
    resource_id: Annotated[NoNulStr | None, Query(max_length=128)] = None,
    key_id: Annotated[uuid.UUID | None, Query()] = None,
    since: Annotated[datetime | None, Query()] = None,
    until: Annotated[datetime | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> AuditList:
    """Who did what to which resource, when and from where, oldest first, filtered."""
    restrictions_of(key).check_unrestricted("read the audit log")
    for name, moment in (("since", since), ("until", until)):
        if moment is not None:
            _check_moment(name, moment)
    where = service.AuditFilter(action, resource, resource_id, key_id, since, until)
    async with unit_of_work(sessionmaker) as session:
        rows, next_cursor = await service.list_entries(
            session, limit=limit, cursor=cursor, where=where
        )
        return AuditList(items=[AuditRead.of(row) for row in rows], next_cursor=next_cursor)


def _check_moment(name: str, moment: datetime) -> None:
    if moment.tzinfo is None:
        raise InvalidInput(f"{name} must include a timezone, e.g. 2026-01-01T00:00:00Z")
    try:
        moment.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(f"{name} must fall within years 1 to 9999 in UTC") from None
