"""Reading the outbox: filters by type (with `*` globs), wallet and chain, pages by cursor.
Only sequenced events are ever read: `cursor > X` never skips one committed later."""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from sqlalchemy import ColumnElement, Row, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.errors import InvalidInput
from chainflow.core.restrictions import UNRESTRICTED, Restrictions
from chainflow.core.types import ChainId, WalletId
from chainflow.domain.events.repository import EVENTS

# A row of COLUMNS below (envelope() renders it).
EventRecord: TypeAlias = Row[*tuple[Any, ...]]
MAX_TYPE_PATTERNS = 20
_PATTERN = re.compile(r"^[a-z0-9_.*]{1,64}$")
# What an envelope is made of, and what a filter looks at.
COLUMNS = (
    EVENTS.c.event_id,
    EVENTS.c.type,
    EVENTS.c.created_at,
    EVENTS.c.cursor,
    EVENTS.c.data,
    EVENTS.c.wallet_id,
    EVENTS.c.chain_id,
)


class InvalidEventTypes(InvalidInput):
    code = "invalid_event_types"
    title = "Invalid event type filter"


@dataclass(frozen=True)
class EventFilter:
    """Which events a reader wants: any of `types` (globs), of one wallet, of one chain; and
    which it may see: `reach`, its API key's restrictions (a key limited to wallets sees only
    their events, one limited to chains only theirs, and neither an event of no wallet or
    chain, such as `webhook.*`)."""

    types: tuple[str, ...] = ()
    wallet_id: WalletId | None = None
    chain_id: ChainId | None = None
    reach: Restrictions = UNRESTRICTED

    def matches(self, row: EventRecord) -> bool:
        """The same test as `where`, on a row already read (the stream's fan-out)."""
        if self.wallet_id is not None and row.wallet_id != self.wallet_id:
            return False
        if self.chain_id is not None and row.chain_id != self.chain_id:
            return False
        if not _within(self.reach.wallet_ids, row.wallet_id):
            return False
        if not _within(self.reach.chain_ids, row.chain_id):
            return False
        return not self.types or any(_glob_match(p, row.type) for p in self.types)

    def where(self) -> list[ColumnElement[bool]]:
        clauses: list[ColumnElement[bool]] = []
        if self.wallet_id is not None:
            clauses.append(EVENTS.c.wallet_id == self.wallet_id)
        if self.chain_id is not None:
            clauses.append(EVENTS.c.chain_id == self.chain_id)
        if self.reach.wallet_ids is not None:
            clauses.append(EVENTS.c.wallet_id.in_(sorted(self.reach.wallet_ids)))
        if self.reach.chain_ids is not None:
            clauses.append(EVENTS.c.chain_id.in_(sorted(self.reach.chain_ids)))
        if self.types:
            clauses.append(or_(*(_type_clause(p) for p in self.types)))
        return clauses


def _within(allowed: frozenset[Any] | None, value: object) -> bool:
    return allowed is None or value in allowed


def parse_types(text: str | None) -> tuple[str, ...]:
    """`transaction.*,wallet.low_balance` → its patterns. Raises: InvalidEventTypes."""
    if not text:
        return ()
    patterns = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    if len(patterns) > MAX_TYPE_PATTERNS:
        raise InvalidEventTypes(f"at most {MAX_TYPE_PATTERNS} type patterns")
    for pattern in patterns:
        if not _PATTERN.match(pattern):
            raise InvalidEventTypes(
                "a type pattern is lower-case letters, digits, '_', '.' and '*' (any run of "
                "characters), at most 64 long, e.g. transaction.*"
            )
    return patterns


def _type_clause(pattern: str) -> ColumnElement[bool]:
    if "*" not in pattern:
        return EVENTS.c.type == pattern
    like = pattern.replace("\\", "\\\\").replace("_", "\\_").replace("*", "%")
    return EVENTS.c.type.like(like, escape="\\")


def _glob_match(pattern: str, value: str) -> bool:
    if "*" not in pattern:
        return pattern == value
    parts = pattern.split("*")
    return re.fullmatch(".*".join(re.escape(part) for part in parts), value) is not None


async def list_events(
    session: AsyncSession, *, after: int, where: EventFilter, limit: int, upto: int | None = None
) -> Sequence[EventRecord]:
    """Up to `limit` sequenced events with a cursor above `after` (and at most `upto`), in
    cursor order."""
    query = select(*COLUMNS).where(EVENTS.c.cursor > after, *where.where())
    if upto is not None:
        query = query.where(EVENTS.c.cursor <= upto)
    return (await session.execute(query.order_by(EVENTS.c.cursor).limit(limit))).all()


async def newest_cursor(session: AsyncSession) -> int:
    """The largest cursor given so far (0: none)."""
    return int(await session.scalar(select(func.max(EVENTS.c.cursor))) or 0)
