"""All SQL of webhook endpoints, deliveries and attempts."""

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import NamedTuple, Protocol, cast

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    Integer,
    Select,
    Table,
    Text,
    Uuid,
    and_,
    any_,
    bindparam,
    column,
    delete,
    exists,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, aliased

from chainflow.core.cursor import decode_cursor
from chainflow.domain.events import EventRow
from chainflow.domain.webhooks.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from chainflow.infra.db.bulk import insert_rows, update_rows
from chainflow.infra.db.params import one_of
from chainflow.infra.db.types import UtcDateTime

_PENDING = DeliveryStatus.PENDING
_DELIVERIES = cast(Table, WebhookDelivery.__table__)
_ATTEMPTS = cast(Table, WebhookAttempt.__table__)


class QueuedEvent(Protocol):
    """What a delivery copies of its event (an EventRow or an EventHead)."""

    @property
    def id(self) -> int: ...
    @property
    def event_id(self) -> uuid.UUID: ...
    @property
    def type(self) -> str: ...
    @property
    def tx_id(self) -> uuid.UUID | None: ...
    @property
    def tx_seq(self) -> int | None: ...


class EventHead(NamedTuple):
    """An event without its data: what fan-out matches and queues."""

    id: int
    event_id: uuid.UUID
    type: str
    cursor: int | None
    tx_id: uuid.UUID | None
    tx_seq: int | None
    wallet_id: uuid.UUID | None
    chain_id: int | None


class DueDelivery(NamedTuple):
    """What a claim needs of a due delivery (its row locked): no ORM instance per row."""

    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_pk: int


class LockedDelivery(NamedTuple):
    """What recording an outcome needs of a delivery (its row locked)."""

    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    attempt_count: int
    last_status_code: int | None
    leased_until: datetime | None


async def head_cursor(session: AsyncSession) -> int:
    """The largest event cursor given so far (0: none)."""
    return int(await session.scalar(select(func.max(EventRow.cursor))) or 0)


async def get_endpoint(
    session: AsyncSession, endpoint_id: uuid.UUID, *, for_update: bool = False
) -> WebhookEndpoint | None:
    return await session.get(WebhookEndpoint, endpoint_id, with_for_update=for_update)


async def list_endpoints(
    session: AsyncSession, *, limit: int, cursor: str | None
) -> Sequence[WebhookEndpoint]:
    query = select(WebhookEndpoint).order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    query = query.where(*_after(cursor, WebhookEndpoint.created_at, WebhookEndpoint.id))
    return (await session.scalars(query.limit(limit))).all()


def _after(
    cursor: str | None,
    created_at: InstrumentedAttribute[datetime],
    row_id: InstrumentedAttribute[uuid.UUID],
) -> list[ColumnElement[bool]]:
    """The condition of the rows after a (created_at, id) page cursor, none for no cursor."""
    after = decode_cursor(cursor)
    if after is None:
        return []
    at, last_id = after
    return [or_(created_at > at, and_(created_at == at, row_id > last_id))]


async def events_after(
    session: AsyncSession,
    after: int,
    *,
    limit: int,
    since: datetime | None = None,
    upto: int | None = None,
) -> Sequence[EventRow]:
    """Sequenced events after a cursor (and, if given, created at or after `since`, and with a
    cursor at most `upto`)."""
    query = select(EventRow).where(EventRow.cursor.is_not(None), EventRow.cursor > after)
    if since is not None:
        query = query.where(EventRow.created_at >= since)
    if upto is not None:
        query = query.where(EventRow.cursor <= upto)
    return (await session.scalars(query.order_by(EventRow.cursor).limit(limit))).all()


async def event_heads_after(
    session: AsyncSession, after: int, *, limit: int, type_globs: Sequence[str] | None = None
) -> list[EventHead]:
    """Sequenced events after a cursor, without their data (fan-out matches on the rest: a
    snapshot is read, and parsed, only for the events an endpoint gets, when they are sent).

    With `type_globs` (the endpoints' event-type globs), on PostgreSQL only the events whose
    type matches one of them: a prefilter (fan-out still matches every filter itself), so
    that an endpoint on `transaction.confirmed` reads 1 row per delivery, not the 5 status
    changes of its transaction (decoding those rows was ~10 % of the delivery loop's CPU;
    docs/performance.md item 29). `limit` counts the rows returned, so a full batch still
    ends at its last row's cursor."""
    postgres = session.get_bind().dialect.name == "postgresql"
    if type_globs is not None and postgres:
        params = {"after": after, "limit": limit, "types": sorted({_like(g) for g in type_globs})}
        return [EventHead(*row) for row in (await session.execute(_HEADS_OF_TYPES, params)).all()]
    e = EventRow
    query = (
        select(e.id, e.event_id, e.type, e.cursor, e.tx_id, e.tx_seq, e.wallet_id, e.chain_id)
        .where(e.cursor.is_not(None), e.cursor > after)
        .order_by(e.cursor)
        .limit(limit)
    )
    return [EventHead(*row) for row in (await session.execute(query)).all()]


def _like(glob: str) -> str:
    """A LIKE pattern matching what the event-type glob matches (rules._glob: `*` any run of
    characters, every other character only itself; `\\` is LIKE's default escape)."""
    escaped = glob.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


# One SQL text, built once: the statement of event_heads_after with type globs (PostgreSQL).
_HEADS_OF_TYPES = (
    select(
        EventRow.id,
        EventRow.event_id,
        EventRow.type,
        EventRow.cursor,
        EventRow.tx_id,
        EventRow.tx_seq,
        EventRow.wallet_id,
        EventRow.chain_id,
    )
    .where(
        EventRow.cursor.is_not(None),
        EventRow.cursor > bindparam("after"),
        EventRow.type.like(any_(bindparam("types", type_=ARRAY(Text())))),
    )
    .order_by(EventRow.cursor)
    .limit(bindparam("limit", type_=Integer()))
)


def add_delivery(
    session: AsyncSession, endpoint_id: uuid.UUID, event: EventRow, *, now: datetime
) -> WebhookDelivery:
    """A pending delivery of one event to the endpoint, due now, as a row to read back."""
    row = WebhookDelivery(
        endpoint_id=endpoint_id,
        event_pk=event.id,
        event_id=event.event_id,
        event_type=event.type,
        tx_id=event.tx_id,
        tx_seq=event.tx_seq,
        status=_PENDING,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(row)
    return row


async def add_deliveries(
    session: AsyncSession, endpoint_id: uuid.UUID, events: Sequence[QueuedEvent], *, now: datetime
) -> None:
    """A pending delivery of each event to the endpoint, due now (one INSERT of unnested
    arrays: one SQL text whatever the batch's size)."""
    if not events:
        return
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(
            _ADD_DELIVERIES,
            {
                "endpoint_id": endpoint_id,
                "now": now,
                "event_pks": [e.id for e in events],
                "event_ids": [e.event_id for e in events],
                "event_types": [e.type for e in events],
                "tx_ids": [e.tx_id for e in events],
                "tx_seqs": [e.tx_seq for e in events],
            },
        )
        return
    rows = [
        {
            "id": uuid.uuid4(),
            "endpoint_id": endpoint_id,
            "event_pk": event.id,
            "event_id": event.event_id,
            "event_type": event.type,
            "tx_id": event.tx_id,
            "tx_seq": event.tx_seq,
            "status": _PENDING,
            "attempt_count": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for event in events
    ]
    await insert_rows(session, _DELIVERIES, rows)


# add_deliveries on PostgreSQL: the values that differ by event as arrays, those every row
# shares (endpoint, status, count, times) as scalars, the id made by the server: 5 arrays,
# not 12 (the 7 others one value repeated, each encoded per row by the driver).
_ADD_DELIVERIES = text(
    """
    INSERT INTO webhook_deliveries (id, endpoint_id, event_pk, event_id, event_type, tx_id,
        tx_seq, status, attempt_count, next_attempt_at, created_at, updated_at)
    SELECT gen_random_uuid(), :endpoint_id, v.event_pk, v.event_id, v.event_type, v.tx_id,
        v.tx_seq, 'pending', 0, :now, :now, :now
    FROM unnest(:event_pks, :event_ids, :event_types, :tx_ids, :tx_seqs)
        AS v(event_pk, event_id, event_type, tx_id, tx_seq)
    """
).bindparams(
    bindparam("endpoint_id", type_=Uuid()),
    bindparam("now", type_=UtcDateTime()),
    bindparam("event_pks", type_=ARRAY(BigInteger())),
    bindparam("event_ids", type_=ARRAY(Uuid())),
    bindparam("event_types", type_=ARRAY(Text())),
    bindparam("tx_ids", type_=ARRAY(Uuid())),
    bindparam("tx_seqs", type_=ARRAY(Integer())),
)


async def lock_due(
    session: AsyncSession, *, now: datetime, limit: int, skip: Sequence[uuid.UUID] = ()
) -> list[DueDelivery]:
    """Pending deliveries that are due, not leased (or their lease has ended: the worker that
    claimed them died) and not behind an earlier one of their transaction, locked (SKIP
    LOCKED: workers never take the same), oldest due first; none of the endpoints in `skip`.

    Ordering: a delivery waits while a pending delivery of an earlier event of the same
    transaction to the same endpoint exists (by tx_seq).
    """
    params = {"now": now, "limit": limit, "skip": list(skip)}
    postgres = session.bind is not None and session.bind.dialect.name == "postgresql"
    if postgres:
        await session.execute(_NO_BITMAP)
    rows = [DueDelivery(*row) for row in (await session.execute(_LOCK_DUE, params)).all()]
    if postgres:  # (a failed query ends the transaction, and SET LOCAL with it)
        await session.execute(_BITMAP_AGAIN)
    return rows


async def due_by_endpoint(
    session: AsyncSession, *, now: datetime, limit: int, skip: Sequence[uuid.UUID] = ()
) -> list[DueDelivery]:
    """lock_due's rows, but taken round-robin over the endpoints (each endpoint's first due,
    then each one's second, …) up to `limit`: an endpoint with a backlog of due rows does not
    fill the batch. SQLite's claim (no row locks: its writers are serialized); PostgreSQL's
    claim does it per endpoint in claim_due."""
    params = {"now": now, "limit": limit, "skip": list(skip)}
    return [DueDelivery(*row) for row in (await session.execute(_DUE_BY_ENDPOINT, params)).all()]


def _lock_due_statement() -> Select[uuid.UUID, uuid.UUID, int]:
    """lock_due's SELECT, built once (parameters: now, limit, skip): building it was most of
    a claim's Python outside the statement's execution (docs/performance.md item 29)."""
    return (
        _due()
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.event_pk)
        .limit(bindparam("limit", type_=Integer()))
        .with_for_update(of=WebhookDelivery, skip_locked=True)
    )


def _due() -> Select[uuid.UUID, uuid.UUID, int]:
    """The due deliveries lock_due and due_by_endpoint take (parameters: now, skip)."""
    earlier = aliased(WebhookDelivery)
    blocked = exists().where(
        earlier.endpoint_id == WebhookDelivery.endpoint_id,
        earlier.tx_id == WebhookDelivery.tx_id,
        # Through lower(): a condition that implies none of the partial indexes' `status =
        # 'pending'`, so the planner cannot use ix_webhook_deliveries_backlog (endpoint_id,
        # created_at) or _pending_event (endpoint_id, event_pk) here, and the check is a
        # lookup of the few rows of one transaction in ix_webhook_deliveries_order
        # (endpoint_id, tx_id, status). On a table that grew since its last ANALYZE (a burst)
        # the planner took the backlog index and filtered every pending row of the endpoint
        # per candidate: 50-370 ms per claim at 3,000 pending, ~2.8 ms of PostgreSQL per
        # delivery (docs/performance.md). tests/integration/webhooks checks the plan.
        func.lower(earlier.status) == _PENDING.value,
        earlier.tx_seq < WebhookDelivery.tx_seq,
    )
    d = WebhookDelivery
    return (
        select(d.id, d.endpoint_id, d.event_pk)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(
            WebhookDelivery.status == _PENDING,
            WebhookDelivery.next_attempt_at <= _NOW_PARAM,
            # Read on the row, not in ix_webhook_deliveries_due: the leased rows a claim
            # steps over are the few in flight, and a lease that wrote the index would make
            # each lease's UPDATE write every index of the row (not HOT).
            or_(WebhookDelivery.leased_until.is_(None), WebhookDelivery.leased_until <= _NOW_PARAM),
            WebhookEndpoint.enabled.is_(True),
            or_(WebhookDelivery.tx_id.is_(None), ~blocked),
            WebhookDelivery.endpoint_id.not_in(bindparam("skip", expanding=True)),
        )
    )


def _due_by_endpoint_statement() -> Select[uuid.UUID, uuid.UUID, int]:
    """due_by_endpoint's SELECT: lock_due's, each row numbered within its endpoint in due
    order, taken by that number (no FOR UPDATE: PostgreSQL refuses it with a window)."""
    d = WebhookDelivery
    rank = func.row_number().over(
        partition_by=d.endpoint_id, order_by=(d.next_attempt_at, d.event_pk)
    )
    ranked = _due().add_columns(d.next_attempt_at, rank.label("rank")).subquery()
    return (
        select(ranked.c.id, ranked.c.endpoint_id, ranked.c.event_pk)
        .order_by(ranked.c.rank, ranked.c.next_attempt_at, ranked.c.event_pk)
        .limit(bindparam("limit", type_=Integer()))
    )


_NOW_PARAM = bindparam("now", type_=UtcDateTime())
_LOCK_DUE = _lock_due_statement()
_DUE_BY_ENDPOINT = _due_by_endpoint_statement()


# The claim walks ix_webhook_deliveries_due in its order and stops at `limit` rows. On a table
# that grew since its last ANALYZE (a burst) the planner estimated a handful of due rows and
# took a bitmap scan instead: every due, leased and finished-but-not-vacuumed entry, the
# ordering check run on every due row, then a sort (1-3 ms and ~3,000 buffers a claim at
# ~1,000 due; docs/performance.md). Only for this statement: RESET puts back the session's.
_NO_BITMAP = text("SET LOCAL enable_bitmapscan = off")
_BITMAP_AGAIN = text("RESET enable_bitmapscan")


class ClaimedDelivery(NamedTuple):
    """A delivery leased by `claim_due`, with its event (None: pruned meanwhile)."""

    delivery: DueDelivery
    leased_until: datetime
    event: "EventSnapshot | None"


async def claim_due(
    session: AsyncSession,
    *,
    now: datetime,
    lock_limit: int,
    limit: int,
    skip: Sequence[uuid.UUID],
    busy: Mapping[uuid.UUID, int],
    per_endpoint: int | None,
    sends_per_endpoint: int | None,
    lease_s: float,
    timeout_s: float,
) -> list[ClaimedDelivery]:
    """PostgreSQL: lock_due, pick, lease and the events' snapshots as one statement (the
    SELECT … FOR UPDATE, the lease's UPDATE of unnested arrays and the snapshots' SELECT were
    three round trips, and the ids and lease times went back and forth as arrays; docs/
    performance.md item 31). Locks due rows per endpoint (lock_due's conditions): of each
    enabled endpoint with a due row, its oldest up to its room (`per_endpoint` less what
    `busy` says it holds) and its share of `lock_limit`, under twice `lock_limit` in all
    (with more endpoints than `lock_limit`, those holding fewest first); picks at most
    `limit` of them, the endpoint holding fewest first (delivery.pick_fairly), and leases
    each picked row until now + `lease_s` + a `timeout_s` per wave of its endpoint's sends
    ahead of it (delivery._waves: `sends_per_endpoint` a wave). Locked rows not picked stay
    locked until commit and are not written, as with lock_due. Returned in the order picked."""
    if lock_limit <= 0 or limit <= 0:
        return []
    unbounded = 2**31 - 1
    params = {
        "now": now,
        "lock_limit": lock_limit,
        "limit": limit,
        "skip": list(skip),
        "busy_ids": list(busy),
        "busy_held": list(busy.values()),
        "per_endpoint": unbounded if per_endpoint is None else per_endpoint,
        "sends": unbounded if sends_per_endpoint is None else max(1, sends_per_endpoint),
        "lease_s": lease_s,
        "timeout_s": timeout_s,
    }
    await session.execute(_NO_BITMAP)
    rows = (await session.execute(_CLAIM_DUE, params)).all()
    await session.execute(_BITMAP_AGAIN)
    claimed = []
    for row in sorted(rows, key=lambda r: r.n):
        event = None
        if row.e_id is not None:
            event = EventSnapshot(
                row.e_id, row.e_event_id, row.e_type, row.e_cursor, row.e_created_at, row.e_data
            )
        due = DueDelivery(row.id, row.endpoint_id, row.event_pk)
        claimed.append(ClaimedDelivery(due, row.leased_until, event))
    return claimed


# claim_due's statement. `room`: each enabled endpoint not skipped, with what this process holds of
# it and how many more it may hold. Each endpoint's due rows are walked in
# ix_webhook_deliveries_endpoint_due (endpoint_id, next_attempt_at, event_pk) in due order and
# locked SKIP LOCKED (_WALK: lock_due's conditions, the ordering check a lookup in
# ix_webhook_deliveries_order through lower(); test_claim_writes checks the plan), up to its room
# and its share of `lock_limit`, in two rounds: `first`, an equal share of every endpoint with room,
# the endpoints holding fewest walked first (ties in random order, so that no endpoint is always
# last) and the round stopped at `lock_limit` rows (a share is at least 1: with more endpoints than
# lock_limit it locked a row of every backlogged endpoint, 40 for a claim of 1; test_fairness counts
# them); `second`, what the first left, shared among the endpoints that filled their first share,
# after their last row. No probe of which endpoints have due rows first: on a table without
# statistics the planner answered it from ix_webhook_deliveries_backlog and read every pending row
# of an endpoint whose deliveries wait for their retries (~10,000 rows, 35-75 ms a claim). Taking
# the oldest due rows over every endpoint (before) let backlogged endpoints fill every claim while a
# healthy one's deliveries waited behind them. `position`: how many of its endpoint's jobs are ahead
# of the row (those the process holds, then the rows picked before it), which bounds it
# (per_endpoint), gives its wave, and orders the picks: the endpoint holding fewest goes first.
_WALK = """
        SELECT d.id, d.endpoint_id, d.event_pk, d.next_attempt_at
        FROM webhook_deliveries AS d
        WHERE d.endpoint_id = {of}.endpoint_id
            AND d.status = 'pending'
            AND d.next_attempt_at <= :now
            AND (d.leased_until IS NULL OR d.leased_until <= :now)
            AND (d.tx_id IS NULL OR NOT EXISTS (
                SELECT 1 FROM webhook_deliveries AS earlier
                WHERE earlier.endpoint_id = d.endpoint_id
                    AND earlier.tx_id = d.tx_id
                    AND lower(earlier.status) = 'pending'
                    AND earlier.tx_seq < d.tx_seq)){more}
        ORDER BY d.next_attempt_at, d.event_pk
        LIMIT least({of}.room, {share}.rows)
        FOR UPDATE OF d SKIP LOCKED
"""
_AFTER = """
            AND (d.next_attempt_at, d.event_pk) > (m.after_at, m.after_pk)"""
_CLAIM_DUE = (
    # Spliced from this module's constants only, no value from outside:
    text(
        f"""
    WITH room AS MATERIALIZED (
        SELECT e.id AS endpoint_id, coalesce(b.held, 0) AS held,
            :per_endpoint - coalesce(b.held, 0) AS room
        FROM webhook_endpoints AS e
            LEFT JOIN unnest(:busy_ids, :busy_held) AS b(endpoint_id, held)
                ON b.endpoint_id = e.id
        WHERE e.enabled IS true
            AND e.id <> ALL(:skip)
            AND :per_endpoint - coalesce(b.held, 0) > 0
    ),
    first_share AS (
        SELECT (:lock_limit + count(*) - 1) / greatest(count(*), 1) AS rows FROM room
    ),
    first_pass AS MATERIALIZED (
        SELECT d.id, d.endpoint_id, d.event_pk, d.next_attempt_at, r.held
        FROM (SELECT * FROM room ORDER BY held, random()) AS r
            CROSS JOIN first_share AS s
            CROSS JOIN LATERAL ({_WALK.format(of="r", share="s", more="")}) AS d
        LIMIT :lock_limit
    ),
    more AS MATERIALIZED (
        SELECT DISTINCT ON (f.endpoint_id) f.endpoint_id, r.held,
            r.room - count(*) OVER (PARTITION BY f.endpoint_id) AS room,
            f.next_attempt_at AS after_at, f.event_pk AS after_pk,
            count(*) OVER (PARTITION BY f.endpoint_id) AS taken
        FROM first_pass AS f
            JOIN room AS r ON r.endpoint_id = f.endpoint_id
        ORDER BY f.endpoint_id, f.next_attempt_at DESC, f.event_pk DESC
    ),
    second_share AS (
        SELECT greatest(0, (left_over + count(*) - 1) / greatest(count(*), 1)) AS rows
        FROM more AS m
            CROSS JOIN (SELECT :lock_limit - count(*) AS left_over FROM first_pass) AS f
            CROSS JOIN first_share AS s
        WHERE m.taken = s.rows AND m.room > 0
        GROUP BY f.left_over
    ),
    locked AS MATERIALIZED (
        SELECT * FROM first_pass
        UNION ALL
        SELECT d.id, d.endpoint_id, d.event_pk, d.next_attempt_at, m.held
        FROM more AS m
            CROSS JOIN first_share AS s1
            CROSS JOIN second_share AS s
            CROSS JOIN LATERAL ({_WALK.format(of="m", share="s", more=_AFTER)}) AS d
        WHERE m.taken = s1.rows AND m.room > 0
    ),
    ranked AS (
        SELECT l.id, l.endpoint_id, l.event_pk, l.next_attempt_at,
            l.held - 1 + row_number() OVER (
                PARTITION BY l.endpoint_id ORDER BY l.next_attempt_at, l.event_pk, l.id
            ) AS position
        FROM locked AS l
    ),
    picked AS (
        SELECT r.id, r.endpoint_id, r.event_pk, r.position,
            row_number() OVER (
                ORDER BY r.position, r.next_attempt_at, r.event_pk, r.id
            ) AS n
        FROM ranked AS r
        WHERE r.position < :per_endpoint
    )
    UPDATE webhook_deliveries AS d
    SET leased_until = :now + make_interval(
            secs => :lease_s + (p.position / :sends) * :timeout_s),
        updated_at = :now
    FROM picked AS p
        LEFT JOIN events AS ev ON ev.id = p.event_pk
    WHERE d.id = p.id AND p.n <= :limit
    RETURNING d.id, d.endpoint_id, d.event_pk, d.leased_until, p.n,
        ev.id AS e_id, ev.event_id AS e_event_id, ev.type AS e_type, ev.cursor AS e_cursor,
        ev.created_at AS e_created_at, CAST(ev.data AS text) AS e_data
    """  # noqa: S608
    )
    .bindparams(
        _NOW_PARAM,
        bindparam("lock_limit", type_=Integer()),
        bindparam("limit", type_=Integer()),
        bindparam("skip", type_=ARRAY(Uuid())),
        bindparam("busy_ids", type_=ARRAY(Uuid())),
        bindparam("busy_held", type_=ARRAY(Integer())),
        bindparam("per_endpoint", type_=Integer()),
        bindparam("sends", type_=Integer()),
        bindparam("lease_s", type_=Float()),
        bindparam("timeout_s", type_=Float()),
    )
    .columns(
        column("id", Uuid()),
        column("endpoint_id", Uuid()),
        column("event_pk", BigInteger()),
        column("leased_until", UtcDateTime()),
        column("n", BigInteger()),
        column("e_id", BigInteger()),
        column("e_event_id", Uuid()),
        column("e_type", Text()),
        column("e_cursor", BigInteger()),
        column("e_created_at", UtcDateTime()),
        column("e_data", Text()),
    )
)


async def lease(session: AsyncSession, until: dict[uuid.UUID, datetime]) -> None:
    """Hide each claimed delivery until its time: then it is due again (its worker died).
    Only `leased_until` changes, which no index holds: a HOT update on PostgreSQL."""
    rows = [{"id": i, "leased_until": at} for i, at in until.items()]
    await update_rows(session, _DELIVERIES, rows)


async def release(session: AsyncSession, ids: Sequence[uuid.UUID], *, due: datetime) -> None:
    """Claimed deliveries that will not be sent by this claim: not leased, due at `due`."""
    if ids:
        await session.execute(
            update(WebhookDelivery)
            .where(one_of(session, WebhookDelivery.id, ids))
            .values(next_attempt_at=due, leased_until=None)
            .execution_options(synchronize_session=False)
        )


async def fail(session: AsyncSession, ids: Sequence[uuid.UUID]) -> None:
    """Claimed deliveries that can never be sent (their event was pruned): failed for good."""
    if ids:
        await session.execute(
            update(WebhookDelivery)
            .where(one_of(session, WebhookDelivery.id, ids))
            .values(status=DeliveryStatus.FAILED, next_attempt_at=None, leased_until=None)
            .execution_options(synchronize_session=False)
        )


async def store_outcomes(
    session: AsyncSession, moves: Sequence[dict[str, object]], attempts: Sequence[dict[str, object]]
) -> None:
    """Move the deliveries on (one UPDATE) and insert their attempts (one INSERT)."""
    await update_rows(session, _DELIVERIES, moves)
    if attempts:
        await insert_rows(session, _ATTEMPTS, attempts)


async def pending_event_pks(
    session: AsyncSession, endpoint_id: uuid.UUID, event_pks: Sequence[int]
) -> set[int]:
    """Which of these events have a pending delivery to the endpoint."""
    if not event_pks:
        return set()
    found: set[int] = set()
    for start in range(0, len(event_pks), 1000):  # bounded IN lists (SQLite's variable limit)
        rows = await session.scalars(
            select(WebhookDelivery.event_pk).where(
                WebhookDelivery.endpoint_id == endpoint_id,
                WebhookDelivery.status == _PENDING,
                WebhookDelivery.event_pk.in_(list(event_pks[start : start + 1000])),
            )
        )
        found.update(rows)
    return found


async def other_pending(session: AsyncSession, delivery: WebhookDelivery) -> uuid.UUID | None:
    """The id of another pending delivery of the same event to the same endpoint, if any."""
    return await session.scalar(
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.endpoint_id == delivery.endpoint_id,
            WebhookDelivery.event_pk == delivery.event_pk,
            WebhookDelivery.status == _PENDING,
            WebhookDelivery.id != delivery.id,
        )
        .limit(1)
    )


async def endpoints_by_id(
    session: AsyncSession, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, WebhookEndpoint]:
    if not ids:
        return {}
    rows = await session.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.id.in_(list(set(ids))))
    )
    return {row.id: row for row in rows}


async def get_delivery(
    session: AsyncSession, endpoint_id: uuid.UUID, delivery_id: uuid.UUID, *, for_update: bool
) -> WebhookDelivery | None:
    query = select(WebhookDelivery).where(
        WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == endpoint_id
    )
    if for_update:
        query = query.with_for_update()
    return (await session.scalars(query)).one_or_none()


async def list_deliveries(
    session: AsyncSession,
    endpoint_id: uuid.UUID,
    *,
    status: DeliveryStatus | None,
    limit: int,
    cursor: str | None,
) -> Sequence[WebhookDelivery]:
    query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    query = query.where(*_after(cursor, WebhookDelivery.created_at, WebhookDelivery.id))
    order = (WebhookDelivery.created_at, WebhookDelivery.id)
    return (await session.scalars(query.order_by(*order).limit(limit))).all()


async def deliveries_of_tx(
    session: AsyncSession, tx_id: uuid.UUID, *, limit: int, cursor: str | None
) -> Sequence[WebhookDelivery]:
    """A transaction's deliveries to every endpoint. The endpoint ids are listed first so that
    the lookup uses the (endpoint_id, tx_id, status) index on both databases."""
    endpoint_ids = (await session.scalars(select(WebhookEndpoint.id))).all()
    if not endpoint_ids:
        return []
    query = select(WebhookDelivery).where(
        one_of(session, WebhookDelivery.endpoint_id, endpoint_ids),
        WebhookDelivery.tx_id == tx_id,
    )
    query = query.where(*_after(cursor, WebhookDelivery.created_at, WebhookDelivery.id))
    order = (WebhookDelivery.created_at, WebhookDelivery.id)
    return (await session.scalars(query.order_by(*order).limit(limit))).all()


async def attempts_of(
    session: AsyncSession, delivery_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[WebhookAttempt]]:
    found: dict[uuid.UUID, list[WebhookAttempt]] = {d: [] for d in delivery_ids}
    if not delivery_ids:
        return found
    rows = await session.scalars(
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id.in_(list(delivery_ids)))
        .order_by(WebhookAttempt.at, WebhookAttempt.id)
    )
    for row in rows:
        found[row.delivery_id].append(row)
    return found


async def master_key_ids(session: AsyncSession) -> dict[str, int]:
    """How many endpoints' signing secrets each master key id has wrapped."""
    query = select(WebhookEndpoint.master_key_id, func.count()).group_by(
        WebhookEndpoint.master_key_id
    )
    return {str(key_id): int(count) for key_id, count in (await session.execute(query)).all()}


async def lock_sealed_not_under(
    session: AsyncSession, key_id: str, *, limit: int
) -> Sequence[WebhookEndpoint]:
    """Up to `limit` endpoints whose secrets are not wrapped by `key_id`, locked for a re-wrap."""
    query = (
        select(WebhookEndpoint)
        .where(WebhookEndpoint.master_key_id != key_id)
        .order_by(WebhookEndpoint.id)
        .limit(limit)
        .with_for_update()
    )
    return (await session.scalars(query)).all()


async def deliveries_by_id(
    session: AsyncSession, ids: Sequence[uuid.UUID]
) -> Sequence[WebhookDelivery]:
    """The deliveries, locked, in id order (the one lock order of delivery rows)."""
    if not ids:
        return []
    query = (
        select(WebhookDelivery)
        .where(WebhookDelivery.id.in_(list(set(ids))))
        .order_by(WebhookDelivery.id)
        .with_for_update()
    )
    return (await session.scalars(query)).all()


async def lock_failing_since(
    session: AsyncSession, ids: Sequence[uuid.UUID], cutoff: datetime
) -> Sequence[WebhookEndpoint]:
    """Enabled endpoints among `ids` that have failed every attempt since `cutoff` or before."""
    query = (
        select(WebhookEndpoint)
        .where(
            WebhookEndpoint.id.in_(list(ids)),
            WebhookEndpoint.enabled.is_(True),
            WebhookEndpoint.first_failure_at.is_not(None),
            WebhookEndpoint.first_failure_at <= cutoff,
        )
        .order_by(WebhookEndpoint.id)
        .with_for_update()
    )
    return (await session.scalars(query)).all()


async def prune_finished(session: AsyncSession, *, before: datetime, limit: int) -> int:
    """Delete up to `limit` succeeded or failed deliveries created before `before` (their
    attempts go with them); return how many."""
    ids = (
        await session.scalars(
            select(WebhookDelivery.id)
            .where(WebhookDelivery.status != _PENDING, WebhookDelivery.created_at < before)
            .limit(limit)
        )
    ).all()
    if ids:
        await session.execute(
            delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(list(ids)))
        )
        await session.execute(delete(WebhookDelivery).where(WebhookDelivery.id.in_(list(ids))))
    return len(ids)


class Backlog(NamedTuple):
    """An endpoint's pending deliveries: how many, and when the oldest was queued."""

    endpoint_id: uuid.UUID
    enabled: bool
    pending: int
    oldest_pending_at: datetime | None


async def backlogs(session: AsyncSession) -> list[Backlog]:
    """Every endpoint with its pending deliveries (one SELECT, for the metrics). Each endpoint's
    count and oldest are read from ix_webhook_deliveries_backlog alone ((endpoint_id,
    created_at) of pending rows): 1 M deliveries, 50 k of them pending, 146 ms as a join over
    the rows, ~20 ms so (docs/performance.md)."""
    d, e = WebhookDelivery, WebhookEndpoint
    mine = (d.status == _PENDING, d.endpoint_id == e.id)
    pending = select(func.count()).select_from(d).where(*mine).scalar_subquery()
    oldest = select(func.min(d.created_at)).where(*mine).scalar_subquery()
    query = select(e.id, e.enabled, pending, oldest).order_by(e.id)
    return [Backlog(*row) for row in (await session.execute(query)).all()]


async def enabled_endpoints(session: AsyncSession) -> int:
    """How many endpoints are enabled."""
    query = select(func.count()).select_from(WebhookEndpoint).where(WebhookEndpoint.enabled)
    return int(await session.scalar(query) or 0)


# The delivery loop's reads (workers/webhooks.py): each one statement of one SQL text per
# shape, id lists as one parameter (params.one_of), no ORM instance per row.


async def lock_endpoints_behind_head(
    session: AsyncSession, *, limit: int
) -> tuple[Sequence[WebhookEndpoint], int]:
    """Enabled endpoints behind the head cursor, locked (another worker's are skipped), and
    that head (0 when none is behind), in one statement: a fan-out with nothing to do is one
    round trip."""
    head = select(func.max(EventRow.cursor)).scalar_subquery()
    query = (
        select(WebhookEndpoint, head)
        .where(WebhookEndpoint.enabled.is_(True), WebhookEndpoint.fanout_cursor < head)
        .order_by(WebhookEndpoint.id)
        .limit(limit)
        .with_for_update(of=WebhookEndpoint, skip_locked=True)
    )
    rows = (await session.execute(query)).all()
    return [row[0] for row in rows], int(rows[0][1] or 0) if rows else 0


class EventSnapshot(NamedTuple):
    """What a delivery's body is made of: an event's envelope fields, its data as stored
    (JSON text, not parsed)."""

    id: int
    event_id: uuid.UUID
    type: str
    cursor: int | None
    created_at: datetime
    data: str


async def event_snapshots(session: AsyncSession, pks: Sequence[int]) -> dict[int, EventSnapshot]:
    """The events with these ids (those still there), their data as its stored text."""
    if not pks:
        return {}
    e = EventRow
    query = select(e.id, e.event_id, e.type, e.cursor, e.created_at, e.data.cast(Text)).where(
        one_of(session, e.id, sorted(set(pks)))
    )
    return {row[0]: EventSnapshot(*row) for row in (await session.execute(query)).all()}


async def lock_to_record_with_clocks(
    session: AsyncSession, ids: Sequence[uuid.UUID]
) -> tuple[list[LockedDelivery], set[uuid.UUID]]:
    """The deliveries still there, locked in id order (the one lock order of delivery rows),
    and which of their endpoints have a failure clock running (first_failure_at set), read in
    the same statement: a record of successes resets only the clocks that run, rather than an
    UPDATE of the endpoints every record."""
    if not ids:
        return [], set()
    d, e = WebhookDelivery, WebhookEndpoint
    query = (
        select(
            d.id,
            d.endpoint_id,
            d.event_id,
            d.attempt_count,
            d.last_status_code,
            d.leased_until,
            e.first_failure_at,
        )
        .join(e, e.id == d.endpoint_id)
        .where(one_of(session, d.id, sorted(set(ids))))
        .order_by(d.id)
        .with_for_update(of=d)
    )
    locked, clocks = [], set()
    for row in (await session.execute(query)).all():
        delivery = LockedDelivery(*row[:-1])
        locked.append(delivery)
        if row[-1] is not None:  # the endpoint's first_failure_at
            clocks.add(delivery.endpoint_id)
    return locked, clocks


async def record_successes(
    session: AsyncSession,
    ids: Sequence[uuid.UUID],
    *,
    status_codes: Sequence[int | None],
    ats: Sequence[datetime],
    durations_ms: Sequence[int],
    now: datetime,
) -> list[tuple[uuid.UUID, bool]]:
    """PostgreSQL: record a successful attempt of each delivery in one statement: lock the
    deliveries still there in id order (the one lock order of delivery rows, as
    lock_to_record_with_clocks), move each to succeeded (one more attempt, its status code,
    no due time, no lease), insert its attempt, and return, for each delivery moved, its id
    and whether its endpoint's failure clock runs (read in the same statement, as
    lock_to_record_with_clocks reads it). A lock, an UPDATE of 7 arrays and an INSERT of 6,
    with every locked row sent back, were three round trips (docs/performance.md item 31)."""
    if not ids:
        return []
    params = {
        "ids": list(ids),
        "codes": list(status_codes),
        "ats": list(ats),
        "durations": list(durations_ms),
        "now": now,
    }
    return [(row[0], bool(row[1])) for row in (await session.execute(_RECORD_SUCCESSES, params))]


# An id may come twice in one batch (two outcomes of one delivery): the row is locked and
# moved once (one attempt more, the status code of its last outcome in input order), and each
# outcome gets its attempt (as `record` stores them: one attempt per outcome), the attempts
# made from the input rows joined to the ids moved, not from the UPDATE's one RETURNING row.
_RECORD_SUCCESSES = text(
    """
    WITH locked AS MATERIALIZED (
        SELECT d.id
        FROM webhook_deliveries AS d
        WHERE d.id = ANY(:ids)
        ORDER BY d.id
        FOR UPDATE OF d
    ),
    given AS MATERIALIZED (
        SELECT v.id, v.code, v.at, v.duration_ms, v.n
        FROM unnest(:ids, :codes, :ats, :durations)
            WITH ORDINALITY AS v(id, code, at, duration_ms, n)
    ),
    last AS (
        SELECT DISTINCT ON (g.id) g.id, g.code FROM given AS g ORDER BY g.id, g.n DESC
    ),
    moved AS (
        UPDATE webhook_deliveries AS d
        SET attempt_count = d.attempt_count + 1, status = 'succeeded', next_attempt_at = NULL,
            leased_until = NULL, last_status_code = last.code, updated_at = :now
        FROM locked JOIN last ON last.id = locked.id
        WHERE d.id = locked.id AND d.id = ANY(:ids)
        RETURNING d.id, d.endpoint_id
    ),
    attempted AS (
        INSERT INTO webhook_attempts (id, delivery_id, at, status_code, error, duration_ms)
        SELECT gen_random_uuid(), g.id, g.at, g.code, NULL, g.duration_ms
        FROM given AS g JOIN moved ON moved.id = g.id
    )
    SELECT moved.id, e.first_failure_at IS NOT NULL
    FROM moved JOIN webhook_endpoints AS e ON e.id = moved.endpoint_id
    """
).bindparams(
    bindparam("ids", type_=ARRAY(Uuid())),
    bindparam("codes", type_=ARRAY(Integer())),
    bindparam("ats", type_=ARRAY(UtcDateTime())),
    bindparam("durations", type_=ARRAY(Integer())),
    bindparam("now", type_=UtcDateTime()),
)


async def any_endpoint_behind(session: AsyncSession) -> bool:
    """Whether an enabled endpoint has not been fanned out up to the head cursor (locked or
    not: no lock is taken)."""
    head = select(func.max(EventRow.cursor)).scalar_subquery()
    behind = exists().where(WebhookEndpoint.enabled.is_(True), WebhookEndpoint.fanout_cursor < head)
    return bool(await session.scalar(select(behind)))
