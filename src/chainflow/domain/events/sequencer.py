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
from functools import partial
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.clock import utcnow
from chainflow.core.types import TxId
from chainflow.domain.events.repository import EVENTS
from chainflow.infra import metrics
from chainflow.infra.db.bulk import update_rows
from chainflow.infra.db.commit_hooks import on_commit
from chainflow.infra.db.params import in_list

# pg_advisory_xact_lock key of the sequencer: "chainflow events sequencer" in a bigint.
_LOCK_KEY = 0x6366_6576_7473_6571  # b"cfevtseq"
BATCH = 1000


async def sequence_pending(session: AsyncSession, *, limit: int = BATCH) -> int:
    """Give up to `limit` committed, unsequenced events their cursor and tx_seq, in id
    order; return how many. Run it in a unit of work of its own, kept short: the lock is held
    until that commits (on SQLite the unit of work's BEGIN IMMEDIATE is the lock)."""
    if session.get_bind().dialect.name == "postgresql":
        # Another sequencer holds it: it numbers what is committed now, and what commits
        # after it started waits for the next pass (a poll or a wake-up away).
        locked = await session.scalar(
            text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _LOCK_KEY}
        )
        if not locked:
            return 0
    c = EVENTS.c
    pending = (
        await session.execute(
            select(c.id, c.tx_id, c.created_at)
            .where(c.cursor.is_(None))
            .order_by(c.id)
            .limit(limit)
        )
    ).all()
    if not pending:
        return 0
    last = await session.scalar(select(func.max(c.cursor))) or 0
    seqs = await _last_seqs(session, {tx_id for _, tx_id, _ in pending if tx_id is not None})
    rows: list[dict[str, Any]] = []
    for cursor, (row_id, tx_id, _) in enumerate(pending, start=last + 1):
        seq = None
        if tx_id is not None:
            seq = seqs[tx_id] = seqs.get(tx_id, 0) + 1
        rows.append({"id": row_id, "cursor": cursor, "tx_seq": seq})
    await update_rows(session, EVENTS, rows)  # one statement on PostgreSQL
    _record_lag([created_at for _, _, created_at in pending])
    return len(rows)


def _record_lag(created: list[datetime]) -> None:
    """Observe each event's wait from its change to its cursor, once this pass commits."""
    if metrics.SWITCH.on:
        now = utcnow()
        on_commit(partial(_observe_lag, [max(0.0, (now - at).total_seconds()) for at in created]))


def _observe_lag(lags: list[float]) -> None:
    for lag in lags:
        metrics.OUTBOX_LAG_SECONDS.observe(lag)


async def _last_seqs(session: AsyncSession, tx_ids: Sequence[TxId] | set[TxId]) -> dict[TxId, int]:
    """The largest tx_seq already given to each of `tx_ids` (absent: none yet)."""
    if not tx_ids:
        return {}
    c = EVENTS.c
    result = await session.execute(
        select(c.tx_id, func.max(c.tx_seq))
        .where(c.tx_id.in_(in_list(list(tx_ids))), c.tx_seq.is_not(None))
        .group_by(c.tx_id)
    )
    return {tx_id: seq for tx_id, seq in result.all()}  # noqa: C416 - Rows, not pairs
