"""The workers' outbox loop: committed events get their cursor promptly, old ones are pruned
in batches, and the newest cursor (and each unfinished transaction's latest event) survives
pruning so numbering never starts again."""

import asyncio
import uuid
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.core.clock import utcnow
from chainflow.core.types import TxId
from chainflow.domain.events import EventRow, append, append_many, new_event
from chainflow.domain.events.wakeups import sequenced
from chainflow.infra.db.uow import unit_of_work
from chainflow.workers.outbox import OutboxConfig, prune_old, run_outbox, sequence_all


async def cursors(sessionmaker: async_sessionmaker[AsyncSession]) -> list[int | None]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(EventRow.cursor).order_by(EventRow.id))).all())


class TestRunOutbox:
    async def test_a_committed_event_is_sequenced_without_waiting_for_the_poll(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        stop, rung = asyncio.Event(), asyncio.Event()
        unsubscribe = sequenced.subscribe(rung.set)
        async with unit_of_work(sessionmaker) as session:
            append(session, "transaction.queued", data={})
        # A poll far beyond the deadlines below: after its first pass, only a commit's
        # wake-up can bring the loop back in time.
        loop = asyncio.create_task(run_outbox(sessionmaker, stop, OutboxConfig(poll_s=600)))
        try:
            await asyncio.wait_for(rung.wait(), timeout=20)  # the first pass
            assert await cursors(sessionmaker) == [1]
            rung.clear()
            async with unit_of_work(sessionmaker) as session:
                append(session, "transaction.signed", data={})
            await asyncio.wait_for(rung.wait(), timeout=20)
            assert await cursors(sessionmaker) == [1, 2]
        finally:
            stop.set()
            await loop
            unsubscribe()


class TestPrune:
    async def test_old_events_go_in_batches_but_the_newest_cursor_stays(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        old, recent = utcnow() - timedelta(days=40), utcnow() - timedelta(days=1)
        async with unit_of_work(sessionmaker) as session:
            await append_many(
                session,
                [new_event("t", data={"n": n}, at=old) for n in range(5)]
                + [new_event("t", data={"n": 5}, at=recent)],
            )
        await sequence_all(sessionmaker)
        config = OutboxConfig(retention_days=30, prune_batch=2)
        assert await prune_old(sessionmaker, config) == 5
        assert await cursors(sessionmaker) == [6]

        async with unit_of_work(sessionmaker) as session:
            await append_many(session, [new_event("t", data={}, at=old)])
        await sequence_all(sessionmaker)
        assert await cursors(sessionmaker) == [6, 7]
        # Everything is old now but the newest cursor is kept: the next one is 8, not 1.
        assert await prune_old(sessionmaker, OutboxConfig(retention_days=0.5)) == 1
        assert await cursors(sessionmaker) == [7]
        async with unit_of_work(sessionmaker) as session:
            await append_many(session, [new_event("t", data={})])
        await sequence_all(sessionmaker)
        assert await cursors(sessionmaker) == [7, 8]

    async def test_tx_seq_goes_on_after_a_long_wait_pruned_the_earlier_events(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """A request queued and signed 40 days ago (a paused wallet) gets its next event as
        tx_seq 3, not 1 (issue 16); a finished request's events all go."""
        waiting, finished = TxId(uuid.uuid4()), TxId(uuid.uuid4())
        old = utcnow() - timedelta(days=40)
        async with unit_of_work(sessionmaker) as session:
            await append_many(
                session,
                [
                    new_event("transaction.queued", data={}, tx_id=waiting, at=old),
                    new_event("transaction.signed", data={}, tx_id=waiting, at=old),
                    new_event("transaction.queued", data={}, tx_id=finished, at=old),
                    new_event("transaction.confirmed", data={}, tx_id=finished, at=old),
                    new_event("wallet.low_balance", data={}, at=old),
                    new_event("wallet.low_balance", data={}),  # the newest cursor: kept anyway
                ],
            )
        await sequence_all(sessionmaker)
        assert await prune_old(sessionmaker, OutboxConfig(retention_days=30)) == 4
        assert await tx_seqs(sessionmaker) == [
            (waiting, 2, "transaction.signed"),
            (None, None, "wallet.low_balance"),
        ]
        async with unit_of_work(sessionmaker) as session:
            await append_many(session, [new_event("transaction.submitted", data={}, tx_id=waiting)])
        await sequence_all(sessionmaker)
        assert (await tx_seqs(sessionmaker))[-1] == (waiting, 3, "transaction.submitted")
        # Once a later event is numbered, the older one is no longer the latest: it goes.
        async with unit_of_work(sessionmaker) as session:
            await session.execute(update(EventRow).values(created_at=old))
        assert await prune_old(sessionmaker, OutboxConfig(retention_days=30)) == 2
        assert await tx_seqs(sessionmaker) == [(waiting, 3, "transaction.submitted")]


async def tx_seqs(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> list[tuple[uuid.UUID | None, int | None, str]]:
    async with sessionmaker() as session:
        rows = await session.execute(
            select(EventRow.tx_id, EventRow.tx_seq, EventRow.type).order_by(EventRow.id)
        )
        return [(tx_id, seq, kind) for tx_id, seq, kind in rows.all()]
