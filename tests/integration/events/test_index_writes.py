"""What the events table's indexes cost and serve (issue 17, docs/performance.md item 32): an
unsequenced event has no entry in the indexes only sequenced rows need (`created_at`, the
pruner's; `(tx_id, tx_seq)`, the sequencer's and the pruner's), and the statements that read
them still find their rows by index, under a custom plan or a generic one, on both dialects."""

import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.core.clock import utcnow
from chainflow.core.types import TxId
from chainflow.domain.events import append_many, new_event, sequence_pending
from chainflow.domain.events.repository import prune
from chainflow.infra.db.types import UtcDateTime
from chainflow.infra.db.uow import unit_of_work
from chainflow.workers.outbox import FINAL_TX_EVENTS
from tests.support.plans import session_plan, statements_sent

_PARTIAL = ("ix_events_created_at", "ix_events_tx_seq")
_EVENTS_SCAN = re.compile(r"SCAN (events|fresh|earlier|sequenced|later)\b")


class TestIndexEntries:
    @pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
    async def test_an_unsequenced_event_has_an_entry_only_in_the_pk_and_the_sequencers_index(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """Each event is inserted, then updated by the sequencer (never HOT: it sets indexed
        columns), and each write adds an entry to every index that holds the row. Before,
        the INSERT wrote 4 (pk, unsequenced, created_at, (tx_id, tx_seq)), now 2."""
        txs = [TxId(uuid.uuid4()) for _ in range(40)]
        async with unit_of_work(sessionmaker) as session:
            await append_many(session, [new_event("t", data={}, tx_id=t) for t in txs * 5])
        assert await _entries(sessionmaker) == {
            "pk_events": 200,
            "ix_events_unsequenced": 200,
            "ix_events_created_at": 0,
            "ix_events_tx_seq": 0,
            "uq_events_cursor": 0,
        }
        async with unit_of_work(sessionmaker) as session:
            assert await sequence_pending(session) == 200
        entries = await _entries(sessionmaker)
        # The UPDATE's new versions (the old ones' entries stay until VACUUM).
        assert {name: entries[name] for name in _PARTIAL} == dict.fromkeys(_PARTIAL, 200)
        assert entries["uq_events_cursor"] == 200


class TestPlans:
    async def test_the_sequencer_and_the_pruner_read_events_by_index(
        self, sessionmaker: async_sessionmaker[AsyncSession], dialect: str
    ) -> None:
        """On 20,000 sequenced events (5 per transaction, 200 past the retention) and 50
        pending: the sequencer's pass probes (tx_id, tx_seq) through the now partial index
        on both dialects, and PostgreSQL's pruner bounds the age by the partial created_at
        one (before: a bitmap scan of the full one); neither scans every event. On
        PostgreSQL as a prepared statement under a forced custom plan; SQLite has one plan."""
        await _check_plans(sessionmaker, dialect, generic=False)

    @pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
    async def test_so_do_they_under_a_generic_plan(
        self, sessionmaker: async_sessionmaker[AsyncSession], dialect: str
    ) -> None:
        """The sequencer's pass the same under a forced generic plan (asyncpg keeps its
        statements prepared, and the pass runs several times a second). Not the pruner: a
        generic plan of `created_at < $1` estimates a third of the table and scans it, and
        PostgreSQL's default (plan_cache_mode auto) takes a generic plan only when its
        estimated cost is not above the custom plans' it has made, which read 200 rows."""
        await _check_plans(sessionmaker, dialect, generic=True)


async def _check_plans(
    sessionmaker: async_sessionmaker[AsyncSession], dialect: str, *, generic: bool
) -> None:
    old = utcnow() - timedelta(days=60)
    async with unit_of_work(sessionmaker) as session:
        connection = await session.connection()
        await connection.execute(_HISTORY[dialect], {"old": old, "new": utcnow()})
        await append_many(
            session,
            [new_event("t", data={}, tx_id=TxId(uuid.uuid4())) for _ in range(50)],
        )
        await connection.exec_driver_sql("ANALYZE events")
    sequencer = await _sent(sessionmaker, "UPDATE events", _sequence)
    pruner = await _sent(sessionmaker, "DELETE FROM events", _prune)
    checked = [(sequencer, "ix_events_tx_seq")]
    if not generic:
        checked.append((pruner, "ix_events_created_at"))
    for (statement, parameters), index in checked:
        if dialect == "postgresql":
            plan = await session_plan(sessionmaker, statement, parameters, generic=generic)
            nodes = _nodes(plan)
            assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], (statement, plan)
            used = {n.get("Index Name") for n in nodes}
            assert index in used, (statement, plan)
        else:
            steps = await _sqlite_plan(sessionmaker, statement, parameters)
            # "SCAN x" without "USING": every row of events (a scan of a subquery's
            # rows, or of an index's, is fine).
            whole = [s for s in steps if _EVENTS_SCAN.match(s) and "USING" not in s]
            assert not whole, (statement, steps)
            # SQLite's pruner pages on uq_events_cursor, as it did with the full index.
            if index == "ix_events_tx_seq":
                assert any(index in s for s in steps), (statement, steps)


async def _sequence(session: AsyncSession) -> None:
    await sequence_pending(session)


async def _prune(session: AsyncSession) -> None:
    await prune(
        session, before=utcnow() - timedelta(days=30), limit=1000, final_types=FINAL_TX_EVENTS
    )


# 20,000 sequenced events, 5 per transaction, the first 200 created 60 days ago.
_HISTORY = {
    "postgresql": text(
        """
        INSERT INTO events (event_id, type, cursor, tx_id, tx_seq, data, created_at)
        SELECT gen_random_uuid(), 'transaction.confirmed', g,
            md5((g / 5)::text)::uuid, g % 5 + 1, '{}',
            CASE WHEN g <= 200 THEN :old ELSE :new END
        FROM generate_series(1, 20000) AS g
        """
    ).bindparams(bindparam("old", type_=UtcDateTime()), bindparam("new", type_=UtcDateTime())),
    "sqlite": text(
        """
        WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 20000)
        INSERT INTO events (event_id, type, cursor, tx_id, tx_seq, data, created_at)
        SELECT lower(hex(randomblob(16))), 'transaction.confirmed', n,
            substr('00000000000000000000000000000000' || printf('%x', n / 5), -32), n % 5 + 1,
            '{}', CASE WHEN n <= 200 THEN :old ELSE :new END
        FROM g
        """
    ).bindparams(bindparam("old", type_=UtcDateTime()), bindparam("new", type_=UtcDateTime())),
}


async def _entries(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    """The entries in each index of events (pgstattuple: every item on the leaf pages)."""
    async with unit_of_work(sessionmaker) as session:
        connection = await session.connection()
        await connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pgstattuple")
        rows = await connection.execute(_ENTRIES)
        return {name: int(count) for name, count in rows.all()}


_ENTRIES = text(
    "SELECT indexrelid::regclass::text, (pgstattuple(indexrelid)).tuple_count"
    " FROM pg_index WHERE indrelid = 'events'::regclass"
)


async def _sent(
    sessionmaker: async_sessionmaker[AsyncSession], prefix: str, run: Any
) -> tuple[str, Any]:
    """The statement starting with `prefix` that `run` sends, and its parameters."""
    seen = await statements_sent(sessionmaker, run)
    [found] = [(q, p) for q, p in seen if q.lstrip().startswith(prefix)]
    return found


async def _sqlite_plan(
    sessionmaker: async_sessionmaker[AsyncSession], statement: str, parameters: Any
) -> list[str]:
    """SQLite's EXPLAIN QUERY PLAN of the statement: one line per step."""
    async with sessionmaker() as session:
        connection = await session.connection()
        rows = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
        return [str(row[-1]) for row in rows.all()]


def _nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = [node]
    for child in node.get("Plans", []):
        found.extend(_nodes(child))
    return found
