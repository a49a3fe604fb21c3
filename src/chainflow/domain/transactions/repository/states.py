"""The state of the requests a bulk round changed, for their event snapshots (snapshots.py):
returned by the round's own INSERTs and UPDATEs where it can (`REQUEST_COLUMNS`,
`ATTEMPT_COLUMNS` as their RETURNING), else read back in the round's DB transaction: one
SELECT per kind of row not returned, whatever the round's size."""

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any, cast

from sqlalchemy import Row, Table, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.types import TxId
from chainflow.domain.transactions.models import Transaction, TxAttempt
from chainflow.domain.transactions.snapshots import ATTEMPT_FIELDS, REQUEST_FIELDS
from chainflow.infra.db.params import one_of

_TRANSACTIONS = cast(Table, Transaction.__table__)
_ATTEMPTS = cast(Table, TxAttempt.__table__)
# Every column a snapshot shows, in snapshot_row's order; not the calldata's neighbours it
# does not (raw bytes of the attempts, idempotency keys).
REQUEST_COLUMNS = [_TRANSACTIONS.c[name] for name in REQUEST_FIELDS]
ATTEMPT_COLUMNS = [_ATTEMPTS.c[name] for name in ATTEMPT_FIELDS]

# How many attempts a request has stored, beside REQUEST_COLUMNS in a RETURNING: a caller that
# returned only the attempts it wrote this round gets the others of a request read
# (load_states), e.g. the original of a signed request whose bump a node accepted.
ATTEMPTS_STORED = (
    select(func.count())
    .where(_ATTEMPTS.c.tx_id == _TRANSACTIONS.c.id)
    .scalar_subquery()
    .label("attempts_stored")
)

States = dict[TxId, tuple[Row[Any], list[Row[Any]]]]
_ATTEMPT_ID = itemgetter(ATTEMPT_FIELDS.index("id"))
# An attempt row's (created_at, id): creation order.
_CREATION_ORDER = itemgetter(ATTEMPT_FIELDS.index("created_at"), ATTEMPT_FIELDS.index("id"))


async def load_states(
    session: AsyncSession,
    tx_ids: Collection[TxId],
    *,
    requests: Sequence[Row[Any]] | None = None,
    attempts: Sequence[Row[Any]] | None = None,
) -> States:
    """Each request of `tx_ids` as this DB transaction sees it, with its attempts in creation
    order. `requests` (rows of REQUEST_COLUMNS) and `attempts` (rows of ATTEMPT_COLUMNS) are
    what the caller's statements returned, as of its last write of those rows in this DB
    transaction (an attempt returned twice: the later row); whichever is None is read. The
    returned attempts are taken as all of each request's unless `requests` carry
    ATTEMPTS_STORED: a request with more stored than returned gets them all read."""
    if requests is None:
        query = select(*REQUEST_COLUMNS).where(one_of(session, _TRANSACTIONS.c.id, tx_ids))
        requests = (await session.execute(query)).all()
    # By position (the columns' order above): a Row's lookup by name is ~20 times its index's.
    wanted = set(tx_ids)
    states: States = {row[0]: (row, []) for row in requests if row[0] in wanted}
    if attempts is None:
        await _read_attempts(session, states, list(states))
        return states
    latest = {_ATTEMPT_ID(row): row for row in attempts}  # RETURNING has no order: last wins
    for attempt in sorted(latest.values(), key=_CREATION_ORDER):
        state = states.get(attempt[0])
        if state is not None:
            state[1].append(attempt)
    counted = bool(requests) and "attempts_stored" in requests[0]._fields  # one result's rows
    short = [
        tx_id
        for tx_id, (row, mine) in states.items()
        if counted and row.attempts_stored != len(mine)
    ]
    if short:
        await _read_attempts(session, states, short)
    return states


async def _read_attempts(session: AsyncSession, states: States, tx_ids: list[TxId]) -> None:
    """Read every attempt of the requests `tx_ids` of `states`, replacing any gathered."""
    for tx_id in tx_ids:
        states[tx_id][1].clear()
    if not tx_ids:
        return
    rows = await session.execute(
        select(*ATTEMPT_COLUMNS)
        .where(one_of(session, _ATTEMPTS.c.tx_id, tx_ids))
        .order_by(_ATTEMPTS.c.created_at, _ATTEMPTS.c.id)
    )
    for attempt in rows:
        states[attempt.tx_id][1].append(attempt)


async def first_sends(
    session: AsyncSession, tx_ids: Collection[TxId], attempts: Sequence[Row[Any]] | None
) -> dict[TxId, datetime]:
    """When a node first accepted each request of `tx_ids` that was ever sent: the earliest
    first_sent_at of its attempts, from `attempts` (rows with tx_id and first_sent_at, every
    attempt of each request as this DB transaction wrote it), or read when it is None."""
    if attempts is not None:
        return _earliest(attempts, tx_ids)
    if not tx_ids:
        return {}
    a = _ATTEMPTS.c
    query = (
        select(a.tx_id, func.min(a.first_sent_at).label("first_sent_at"))
        .where(one_of(session, a.tx_id, list(tx_ids)), a.first_sent_at.is_not(None))
        .group_by(a.tx_id)
    )
    return _earliest((await session.execute(query)).all(), tx_ids)


def _earliest(rows: Iterable[Any], tx_ids: Collection[TxId]) -> dict[TxId, datetime]:
    wanted = set(tx_ids)
    first: dict[TxId, datetime] = {}
    for row in rows:
        sent, tx_id = row.first_sent_at, row.tx_id
        if sent is not None and tx_id in wanted and (tx_id not in first or sent < first[tx_id]):
            first[tx_id] = sent
    return first
