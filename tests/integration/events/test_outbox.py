"""The outbox: appending in the caller's unit of work, the sequencer's cursors and tx_seq,
the envelope; on both dialects, and under concurrent writers on PostgreSQL."""

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from chainflow.core.clock import utcnow
from chainflow.core.types import ChainId, TxId, WalletId
from chainflow.domain.events import (
    EventRow,
    append,
    append_many,
    envelope,
    new_event,
    sequence_pending,
)
from chainflow.infra import metrics
from chainflow.infra.db.engine import create_engine, create_sessionmaker
from chainflow.infra.db.uow import unit_of_work
from tests.support.sql_log import statements

Rows = list[tuple[int, int | None, TxId | None, int | None, str]]


async def stored(sessionmaker: async_sessionmaker[AsyncSession]) -> Rows:
    """(id, cursor, tx_id, tx_seq, type) of every event, in id order."""
    async with sessionmaker() as session:
        result = await session.execute(
            select(
                EventRow.id, EventRow.cursor, EventRow.tx_id, EventRow.tx_seq, EventRow.type
            ).order_by(EventRow.id)
        )
        return [tuple(row) for row in result.all()]  # type: ignore[misc]


async def sequence(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with unit_of_work(sessionmaker) as session:
        return await sequence_pending(session)


class TestAppend:
    async def test_events_are_unsequenced_until_the_sequencer_runs(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        tx_a, tx_b = TxId(uuid.uuid4()), TxId(uuid.uuid4())
        async with unit_of_work(sessionmaker) as session:
            append(session, "transaction.queued", data={"n": 1}, tx_id=tx_a)
            await session.flush()
            await append_many(
                session,
                [
                    new_event("transaction.queued", data={"n": 2}, tx_id=tx_b),
                    new_event("transaction.signed", data={"n": 3}, tx_id=tx_a),
                    new_event("wallet.low_balance", data={"n": 4}),
                    new_event("transaction.signed", data={"n": 5}, tx_id=tx_b),
                    new_event("transaction.submitted", data={"n": 6}, tx_id=tx_a),
                ],
            )
        assert [cursor for _, cursor, *_ in await stored(sessionmaker)] == [None] * 6

        assert await sequence(sessionmaker) == 6
        rows = await stored(sessionmaker)
        assert [cursor for _, cursor, *_ in rows] == [1, 2, 3, 4, 5, 6]
        assert [(tx, seq) for _, _, tx, seq, _ in rows] == [
            (tx_a, 1),
            (tx_b, 1),
            (tx_a, 2),
            (None, None),
            (tx_b, 2),
            (tx_a, 3),
        ]
        assert await sequence(sessionmaker) == 0

    async def test_later_rounds_continue_the_cursor_and_each_transactions_sequence(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        tx = TxId(uuid.uuid4())
        for status in ("queued", "signed", "submitted"):
            async with unit_of_work(sessionmaker) as session:
                await append_many(session, [new_event(f"transaction.{status}", data={}, tx_id=tx)])
            assert await sequence(sessionmaker) == 1
        rows = await stored(sessionmaker)
        assert [(cursor, seq) for _, cursor, _, seq, _ in rows] == [(1, 1), (2, 2), (3, 3)]

    async def test_a_rolled_back_unit_of_work_leaves_no_event(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        with pytest.raises(RuntimeError):
            async with unit_of_work(sessionmaker) as session:
                append(session, "transaction.queued", data={})
                await session.flush()
                raise RuntimeError("the change failed")
        assert await stored(sessionmaker) == []

    async def test_the_envelope_holds_id_type_time_cursor_and_data(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        wallet, chain = WalletId(uuid.uuid4()), ChainId(31337)
        data = {"transaction": {"id": "x", "status": "signed"}, "previous_status": "queued"}
        async with unit_of_work(sessionmaker) as session:
            row = append(session, "transaction.signed", data=data, wallet_id=wallet, chain_id=chain)
        await sequence(sessionmaker)
        async with sessionmaker() as session:
            loaded = await session.get_one(EventRow, row.id)
        body = envelope(loaded)
        assert body == {
            "id": f"evt_{loaded.event_id.hex}",
            "type": "transaction.signed",
            "created_at": body["created_at"],
            "cursor": 1,
            "data": data,
        }
        assert body["created_at"].endswith("Z")
        assert (loaded.wallet_id, loaded.chain_id) == (wallet, chain)


class TestSequencerPass:
    async def test_a_pass_reads_and_writes_the_events_in_one_statement(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """Issue 17: the pass was four statements that read every event twice (12.6 rows per
        transaction for 5 events); now one UPDATE numbers them, after the lock on PostgreSQL."""
        txs = [TxId(uuid.uuid4()) for _ in range(5)]
        async with unit_of_work(sessionmaker) as session:
            await append_many(session, [new_event("t", data={}, tx_id=tx) for tx in txs * 3])
        with statements(sessionmaker) as sent:
            assert await sequence(sessionmaker) == 15
        on_events = [sql for sql in sent if " events" in sql]
        assert len(on_events) == 1
        assert on_events[0].startswith("UPDATE events")
        rows = await stored(sessionmaker)
        assert [cursor for _, cursor, *_ in rows] == list(range(1, 16))
        assert [seq for *_, seq, _ in rows] == [1] * 5 + [2] * 5 + [3] * 5

    async def test_a_transaction_whose_events_span_passes_numbers_on_from_its_last(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        tx, other = TxId(uuid.uuid4()), TxId(uuid.uuid4())
        for batch in ([tx, tx], [other, tx, None, tx], [tx]):
            async with unit_of_work(sessionmaker) as session:
                await append_many(session, [new_event("t", data={}, tx_id=t) for t in batch])
            await sequence(sessionmaker)
        rows = await stored(sessionmaker)
        assert [(cursor, t, seq) for _, cursor, t, seq, _ in rows] == [
            (1, tx, 1),
            (2, tx, 2),
            (3, other, 1),
            (4, tx, 3),
            (5, None, None),
            (6, tx, 4),
            (7, tx, 5),
        ]

    async def test_a_pass_numbers_at_most_its_limit_the_oldest_first(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        tx = TxId(uuid.uuid4())
        async with unit_of_work(sessionmaker) as session:
            await append_many(session, [new_event("t", data={"n": n}, tx_id=tx) for n in range(5)])
        async with unit_of_work(sessionmaker) as session:
            assert await sequence_pending(session, limit=3) == 3
        rows = await stored(sessionmaker)
        assert [(cursor, seq) for _, cursor, _, seq, _ in rows] == [
            (1, 1),
            (2, 2),
            (3, 3),
            (None, None),
            (None, None),
        ]
        assert await sequence(sessionmaker) == 2
        assert [(c, q) for _, c, _, q, _ in await stored(sessionmaker)][3:] == [(4, 4), (5, 5)]

    async def test_each_event_s_wait_for_its_cursor_is_observed_once_in_seconds(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """The pass returns each row's lag computed in SQL (item 56): seconds from its
        created_at to the sequencer's clock, none below 0 (a writer's clock ahead)."""
        cell = metrics.OUTBOX_LAG_SECONDS.cell()
        counts, total = list(cell.counts), cell.sum
        now = utcnow()
        ages = (90.0, 3.0, -60.0)  # seconds before the pass; the last one in its future
        async with unit_of_work(sessionmaker) as session:
            await append_many(
                session, [new_event("t", data={}, at=now - timedelta(seconds=s)) for s in ages]
            )
        assert await sequence(sessionmaker) == 3
        waited = (utcnow() - now).total_seconds()
        moved = {
            bound: after - before
            for bound, after, before in zip(cell._bounds, cell.counts, counts, strict=True)
            if after != before
        }
        assert moved == {120: 1, 5: 1, 0.05: 1}  # 90 s, 3 s and 0 (not -60)
        # SQLite's julianday rounds each time to the millisecond: a lag may read ~1 ms short
        assert 93.0 - 0.005 <= cell.sum - total <= 93.0 + 2 * waited


class TestSequencerOrder:
    @pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
    async def test_a_row_inserted_first_but_committed_last_gets_the_later_cursor(
        self, database_url: str
    ) -> None:
        async with _engine(database_url) as engine:
            sessionmaker = create_sessionmaker(engine)
            async with unit_of_work(sessionmaker) as early:
                append(early, "transaction.queued", data={"who": "early"})
                await early.flush()  # takes the lower id, and stays uncommitted
                async with unit_of_work(sessionmaker) as late:
                    append(late, "transaction.queued", data={"who": "late"})
                assert await sequence(sessionmaker) == 1
            assert await sequence(sessionmaker) == 1
            rows = await stored(sessionmaker)
        (early_id, early_cursor, *_), (late_id, late_cursor, *_) = rows
        assert early_id < late_id
        assert (late_cursor, early_cursor) == (1, 2)

    @pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
    async def test_a_reader_of_cursor_after_x_never_sees_a_gap_filled_later(
        self, database_url: str
    ) -> None:
        writers, units, per_unit = 8, 25, 3
        async with _engine(database_url) as engine:
            sessionmaker = create_sessionmaker(engine)
            all_sequenced = asyncio.Event()
            reader = asyncio.create_task(_read_all(sessionmaker, all_sequenced))
            writing = asyncio.gather(
                *(_write(sessionmaker, seed, units, per_unit) for seed in range(writers))
            )
            while not writing.done() or await sequence(sessionmaker):
                await sequence(sessionmaker)  # a database round trip: the writers run meanwhile
            await writing
            all_sequenced.set()
            seen = await reader
            rows = await stored(sessionmaker)
        assert seen == list(range(1, writers * units * per_unit + 1))
        _assert_numbered_once(rows, seen, per_unit)

    async def test_several_sequencers_at_once_number_every_event_once_without_gaps(
        self, database_url: str
    ) -> None:
        """Every worker process runs a sequencer: three at once, beside eight writers and a
        reader, on both databases."""
        writers, units, per_unit, sequencers = 8, 15, 3, 3
        async with _engine(database_url) as engine:
            sessionmaker = create_sessionmaker(engine)
            all_sequenced = asyncio.Event()
            reader = asyncio.create_task(_read_all(sessionmaker, all_sequenced))
            writing = asyncio.gather(
                *(_write(sessionmaker, seed, units, per_unit) for seed in range(writers))
            )
            counts = await asyncio.gather(
                *(_sequence_until(sessionmaker, writing) for _ in range(sequencers))
            )
            await writing
            while await sequence(sessionmaker):
                pass
            all_sequenced.set()
            seen = await reader
            rows = await stored(sessionmaker)
        total = writers * units * per_unit
        assert seen == list(range(1, total + 1))
        assert sum(counts) <= total
        _assert_numbered_once(rows, seen, per_unit)


def _assert_numbered_once(rows: Rows, seen: list[int], per_unit: int) -> None:
    """Every row has one of the cursors the reader saw, and each transaction's events are
    numbered 1..per_unit in cursor order."""
    assert sorted(-1 if cursor is None else cursor for _, cursor, *_ in rows) == seen
    by_tx: dict[TxId | None, list[tuple[int | None, int | None]]] = {}
    for _, cursor, tx, seq, _ in rows:
        by_tx.setdefault(tx, []).append((cursor, seq))
    for events in by_tx.values():
        assert [seq for _, seq in sorted(events)] == list(range(1, per_unit + 1))


async def _sequence_until(
    sessionmaker: async_sessionmaker[AsyncSession], writing: "asyncio.Future[list[None]]"
) -> int:
    """Sequence as a worker's outbox loop does, until the writers are done; how many."""
    total = 0
    while not writing.done():
        total += await sequence(sessionmaker)  # a database round trip: the writers run meanwhile
    return total


async def _write(
    sessionmaker: async_sessionmaker[AsyncSession], seed: int, units: int, per_unit: int
) -> None:
    """`units` transactions of `per_unit` events of one tx each, committing in an order other
    than their ids' (load shaping, not synchronisation)."""
    rng = random.Random(seed)  # noqa: S311 - shapes load, guards nothing
    for _ in range(units):
        tx = TxId(uuid.uuid4())
        async with unit_of_work(sessionmaker) as session:
            for n in range(per_unit):
                await append_many(session, [new_event("t", data={"n": n}, tx_id=tx)])
                if rng.random() < 0.5:
                    # Load shaping: another writer's insert and commit may come between two of
                    # this transaction's inserts. No event marks such a point; a turn is one.
                    await asyncio.sleep(0)


async def _read_all(
    sessionmaker: async_sessionmaker[AsyncSession], all_sequenced: asyncio.Event
) -> list[int]:
    """Poll `cursor > position` as a stream reader does; fail on any gap it would skip."""
    position, seen = 0, []
    while True:
        finished = all_sequenced.is_set()
        async with sessionmaker() as session:
            cursors = (
                await session.scalars(
                    select(EventRow.cursor)
                    .where(EventRow.cursor > position)
                    .order_by(EventRow.cursor)
                )
            ).all()
        for cursor in cursors:
            assert cursor == position + 1, f"gap after {position}: {cursor}"
            seen.append(cursor)
            position = cursor
        if finished and not cursors:
            return seen


@asynccontextmanager
async def _engine(url: str) -> AsyncIterator[AsyncEngine]:
    """An engine with room for the concurrent writers, the sequencer and the reader."""
    engine = create_engine(url, pool_size=12)
    try:
        yield engine
    finally:
        await engine.dispose()
