"""Write and read the audit log. `record` is the one function every audited change calls,
in the DB transaction of the change itself, so a change and its entry commit together.

An entry names who (the API key's id; `actor` "cli" for the command line, with no key), what
(`action`, `noun.verb`: wallet.created, policy.updated, api_key.revoked, ...), on which
resource and from which address. It never holds a secret: only ids and names of actions.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.clock import utcnow
from chainflow.core.cursor import decode_cursor, encode_cursor
from chainflow.domain.audit.models import AuditEntry


@dataclass(frozen=True)
class Actor:
    """Who makes a change: an API key from an address, or the command line."""

    key_id: uuid.UUID | None
    remote_addr: str | None = None
    via: str = "api"


CLI = Actor(key_id=None, via="cli")


def record(
    session: AsyncSession, actor: Actor, action: str, *, resource: str, resource_id: object
) -> None:
    """Add an entry to the caller's DB transaction (it commits with the change)."""
    session.add(
        AuditEntry(
            id=uuid.uuid4(),
            at=utcnow(),
            key_id=actor.key_id,
            actor=actor.via,
            action=action,
            resource=resource,
            resource_id=str(resource_id)[:128],
            remote_addr=(actor.remote_addr or None) and actor.remote_addr[:64],
        )
    )


@dataclass(frozen=True)
class AuditFilter:
    action: str | None = None
    resource: str | None = None
    resource_id: str | None = None
    key_id: uuid.UUID | None = None
    since: datetime | None = None
    until: datetime | None = None


async def list_entries(
    session: AsyncSession, *, limit: int, cursor: str | None, where: AuditFilter
) -> tuple[Sequence[AuditEntry], str | None]:
    """One page of entries, oldest first, filtered, and the next cursor."""
    query = select(AuditEntry)
    for column, value in (
        (AuditEntry.action, where.action),
        (AuditEntry.resource, where.resource),
        (AuditEntry.resource_id, where.resource_id),
        (AuditEntry.key_id, where.key_id),
    ):
        if value is not None:
            query = query.where(column == value)
    if where.since is not None:
        query = query.where(AuditEntry.at >= where.since)
    if where.until is not None:
        query = query.where(AuditEntry.at < where.until)
    after = decode_cursor(cursor)
    if after is not None:
        at, row_id = after
        query = query.where(
            or_(AuditEntry.at > at, and_(AuditEntry.at == at, AuditEntry.id > row_id))
        )
    rows = (
        await session.scalars(query.order_by(AuditEntry.at, AuditEntry.id).limit(limit + 1))
    ).all()
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(last.at, last.id)
