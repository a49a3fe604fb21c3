"""The sequencer: gives committed events their global cursor and per-transaction sequence.

An autoincrement id is handed out at INSERT, not at COMMIT: writer A takes id 7, writer B
takes id 8 and commits first, and a reader of `id > 6` sees 8, moves its position to 8 and
never sees 7 when A commits. So readers page on `cursor` instead, which only this module
writes: under a lock that serialises sequencers and is held until its transaction commits,
it numbers the committed rows that have no cursor yet, from the largest cursor + 1, in id
order. A row becomes visible to readers of `cursor > X` only once it has a cursor, and every
later cursor is given by a later sequencer transaction (which sees everything committed
before it), so the cursors readers see are gap-free and never filled in behind them.
docs/events.md has the whole argument.
"""

from collections.abc import Sequence
from datetime import datetime
from functools import cache, partial

from sqlalchemy import (
    ColumnElement,
    Float,
    Update,
    bindparam,
    case,
    func,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.clock import utcnow
from chainflow.domain.events.repository import EVENTS
from chainflow.infra import metrics
from chainflow.infra.db.commit_hooks import on_commit
from chainflow.infra.db.types import UtcDateTime

# pg_advisory_xact_lock key of the sequencer: "chainflow events sequencer" in a bigint.
_LOCK_KEY = 0x6366_6576_7473_6571  # b"cfevtseq"
_LAG = metrics.OUTBOX_LAG_SECONDS.cell()  # observed per event: its cell (infra/metrics.py)
BATCH = 1000
# The pass finds its rows in ix_events_unsequenced, which keeps an entry for every row it
# numbered (the old, cursor-NULL version of a non-HOT update) until VACUUM removes it. An
# index scan marks such an entry dead once its row version is dead to every snapshot, and
# later passes skip it without reading the heap; a bitmap scan never marks entries, so each
# of its passes read the heap page of every event numbered since the table's last VACUUM
# (a run of 16,000 events: 34 pages for the first pass, 2,251 for the last, ~2 ms for a pass
# that found nothing; docs/performance.md item 39). The planner picks the bitmap scan
# when its statistics say a few % of the rows are unsequenced (an ANALYZE in a burst), so
# the pass does not let it; the index scan in id order is also the order the pass needs.
_LOCK_AND_NO_BITMAP = text(
    "SELECT pg_try_advisory_xact_lock(:key)"
    " AND set_config('enable_bitmapscan', 'off', true) = 'off'"
)


async def sequence_pending(session: AsyncSession, *, limit: int = BATCH) -> int:
    """Give up to `limit` committed, unsequenced events their cursor and tx_seq, in id
    order; return how many. Run it in a unit of work of its own, kept short: the lock is held
    until that commits (on SQLite the unit of work's BEGIN IMMEDIATE is the lock)."""
    if session.get_bind().dialect.name == "postgresql":
        # Another sequencer holds it: it numbers what is committed now, and what commits
        # after it started waits for the next pass (a poll or a wake-up away). A statement
        # of its own: the numbering's snapshot must be taken after the lock is held, so that
        # it sees every cursor the previous holder committed (READ COMMITTED: a snapshot per
        # statement). The same statement turns bitmap scans off for this transaction only
        # (set_config(..., true) is SET LOCAL): see _LOCK_AND_NO_BITMAP.
        locked = await session.scalar(_LOCK_AND_NO_BITMAP, {"key": _LOCK_KEY})
        if not locked:
            return 0
    dialect = session.get_bind().dialect.name
    lags = (await session.scalars(numbering(limit, dialect), {"now": utcnow()})).all()
    _record_lag(lags)
    return len(lags)


@cache
def numbering(limit: int, dialect: str) -> Update:
    """The pass as one statement, each event read and written once (issue 17): the oldest
    `limit` unsequenced rows by id (the partial index on `cursor IS NULL`) get the cursors
    after the largest one, in id order, and each the tx_seq after its transaction's largest
    (one probe of the (tx_id, tx_seq) index per row); returns, per row, the seconds from its
    created_at to the parameter `now` (`lag_seconds`). Before, a pass was four statements and
    read each event twice (12.6 rows per transaction for 5 events, docs/performance.md).
    Built once per limit and dialect (cached): building it, three aliases of the events
    table and their subqueries, and its cache key at every execution cost ~1.3 ms of the
    worker's CPU a pass, more than the rest of a pass of 25 events (item 56)."""
    c = EVENTS.c
    fresh, earlier, sequenced = (EVENTS.alias(name) for name in ("fresh", "earlier", "sequenced"))
    pending = (
        select(fresh.c.id, fresh.c.tx_id)
        .where(fresh.c.cursor.is_(None))
        .order_by(fresh.c.id)
        .limit(limit)
    ).subquery("pending")
    # `tx_seq IS NOT NULL`: what max() reads anyway, said so that SQLite, too, probes the
    # partial (tx_id, tx_seq) index (PostgreSQL adds it to a max itself).
    last_seq = (
        select(func.max(earlier.c.tx_seq)).where(
            earlier.c.tx_id == pending.c.tx_id, earlier.c.tx_seq.is_not(None)
        )
    ).scalar_subquery()
    last_cursor = select(func.coalesce(func.max(sequenced.c.cursor), 0)).scalar_subquery()
    in_tx = func.row_number().over(partition_by=pending.c.tx_id, order_by=pending.c.id)
    numbered = select(
        pending.c.id,
        (last_cursor + func.row_number().over(order_by=pending.c.id)).label("cursor"),
        case((pending.c.tx_id.is_not(None), func.coalesce(last_seq, 0) + in_tx)).label("tx_seq"),
    ).subquery("numbered")
    return (
        update(EVENTS)
        .where(c.id == numbered.c.id)
        .values(cursor=numbered.c.cursor, tx_seq=numbered.c.tx_seq)
        .returning(lag_seconds(dialect, c.created_at))
    )


def lag_seconds(dialect: str, created_at: ColumnElement[datetime]) -> ColumnElement[float]:
    """Seconds from `created_at` to the bound `now`, at least 0, as a float computed in SQL:
    one float8 per row to decode, where the RETURNING of created_at cost a timestamptz, a
    datetime, UtcDateTime's result processor and a subtraction per event (3.6% of the
    draining worker's CPU, 8% of the tracker's, on the batch path; docs/performance.md items
    51, 56). Clock: both ends are Python's wall clock (`utcnow`), as before: created_at of the
    process that made the change, `now` of the sequencing worker, read just before the
    statement (it used to be read just after it returned); never the database server's.
    SQLite's julianday counts whole milliseconds, enough for the histogram's bounds (0.05 s up)."""
    now = bindparam("now", type_=UtcDateTime())
    zero: ColumnElement[float] = literal_column("0.0", Float())
    seconds: ColumnElement[float]
    if dialect == "postgresql":
        seconds = func.date_part(literal_column("'epoch'"), now - created_at)
        return func.greatest(seconds, zero, type_=Float())
    seconds = (func.julianday(now) - func.julianday(created_at)) * literal_column("86400.0")
    # SQLite's two-argument max() is NULL if either is: a time julianday cannot read counts 0
    return func.coalesce(func.max(seconds, zero), zero, type_=Float())


def _record_lag(lags: Sequence[float]) -> None:
    """Observe each event's wait from its change to its cursor, once this pass commits."""
    if metrics.SWITCH.on:
        on_commit(partial(_observe_lag, lags))


def _observe_lag(lags: Sequence[float]) -> None:
    for lag in lags:
        _LAG.observe(lag)
