"""What a claim reads and writes in the database (issue 16, docs/performance.md): the lease
hides a delivery without changing an indexed column (a HOT update on PostgreSQL), a lease that
ended makes it due again, and the claim's ordering check keeps to the transaction's index on a
table filled in a burst (no statistics yet)."""

import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Uuid, bindparam, event, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.core.clock import utcnow
from chainflow.domain.webhooks import repository
from chainflow.domain.webhooks.attempts import Outcome, record
from chainflow.domain.webhooks.models import DeliveryStatus, WebhookDelivery
from chainflow.domain.webhooks.repository import EventHead
from chainflow.domain.webhooks.schemas import DeliveryRead
from chainflow.infra.db.uow import unit_of_work
from tests.integration.webhooks.conftest import Deliveries
from tests.support.plans import prepared_plan
from tests.support.polling import eventually


def heads(count: int, *, per_tx: int = 1, first: int = 1) -> list[EventHead]:
    """`count` events, `per_tx` to a transaction (tx_seq 0, 1, …), event pks from `first`."""
    txs = [uuid.uuid4() for _ in range(count // per_tx + 1)]
    return [
        EventHead(
            id=first + i,
            event_id=uuid.uuid4(),
            type="transaction.confirmed",
            cursor=first + i,
            tx_id=txs[i // per_tx],
            tx_seq=i % per_tx,
            wallet_id=None,
            chain_id=None,
        )
        for i in range(count)
    ]


async def queued(deliveries: Deliveries, count: int, *, per_tx: int = 1) -> uuid.UUID:
    """An endpoint with `count` pending deliveries due now (one INSERT, as fan-out does)."""
    endpoint, _ = await deliveries.endpoint("http://127.0.0.1:9/hook")
    async with unit_of_work(deliveries.sessionmaker) as session:
        events = heads(count, per_tx=per_tx)
        await repository.add_deliveries(session, endpoint.id, events, now=utcnow())
    return endpoint.id


class TestLease:
    async def test_a_leased_delivery_is_not_due_until_its_lease_ends(
        self, deliveries: Deliveries
    ) -> None:
        await queued(deliveries, 3)
        now = utcnow()
        until = now + timedelta(seconds=30)
        async with unit_of_work(deliveries.sessionmaker) as session:
            [first, *_] = await repository.lock_due(session, now=now, limit=1)
            await repository.lease(session, {first.id: until})
        async with unit_of_work(deliveries.sessionmaker) as session:
            rows = await repository.lock_due(session, now=now, limit=10)
            assert len(rows) == 2
            assert first.id not in {r.id for r in rows}
            # its worker died: due again, first (it was due earliest), once the lease ends
            later = await repository.lock_due(session, now=until, limit=10)
            assert len(later) == 3
            assert later[0].id == first.id
            row = await session.get(WebhookDelivery, first.id)
            assert row is not None
            assert DeliveryRead.of(row, []).next_attempt_at == until  # not its old due time


class TestRecord:
    async def test_two_successes_of_one_delivery_in_a_batch_store_two_attempts(
        self, deliveries: Deliveries
    ) -> None:
        """A delivery twice in an all-success batch (one statement on PostgreSQL): moved once
        (one attempt more, the code of its last outcome), and each outcome's attempt stored,
        as `record` stores one attempt per outcome."""
        endpoint_id = await queued(deliveries, 2)
        now = utcnow()
        async with unit_of_work(deliveries.sessionmaker) as session:
            rows = await repository.lock_due(session, now=now, limit=10)
        [twice, once] = [r.id for r in rows]

        def success(delivery_id: uuid.UUID, code: int, ms: int) -> Outcome:
            return Outcome(delivery_id, endpoint_id, now, code, None, ms)

        outcomes = [success(twice, 200, 5), success(once, 200, 6), success(twice, 204, 7)]
        async with unit_of_work(deliveries.sessionmaker) as session:
            await record(session, outcomes, deliveries.config, now=now)
        attempts = await deliveries.attempts()
        assert sorted((a.delivery_id == twice, a.status_code, a.duration_ms) for a in attempts) == [
            (False, 200, 6),
            (True, 200, 5),
            (True, 204, 7),
        ]
        by_id = {d.id: d for d in await deliveries.deliveries()}
        assert by_id[twice].status == DeliveryStatus.SUCCEEDED
        assert by_id[twice].attempt_count == 1
        assert by_id[once].attempt_count == 1
        assert by_id[twice].last_status_code == 204  # its last outcome's


class TestWritesOnPostgres:
    @pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
    async def test_the_lease_writes_no_index_entry(self, deliveries: Deliveries) -> None:
        """The lease's UPDATE sets `leased_until` only, which no index holds, and the table
        leaves room on each page (fillfactor), so it is HOT: before, it moved
        `next_attempt_at` (indexed) and wrote an entry in each of the 6 indexes."""
        await queued(deliveries, 300)
        now = utcnow()
        async with unit_of_work(deliveries.sessionmaker) as session:
            due = await repository.lock_due(session, now=now, limit=300)
            assert len(due) == 300
            await repository.lease(session, {d.id: now + timedelta(seconds=30) for d in due})

        async def counted() -> tuple[int, int] | None:
            async with unit_of_work(deliveries.sessionmaker) as session:
                updated, hot = (await session.execute(_HOT)).one()
            return (updated, hot) if updated == 300 else None

        updated, hot = await eventually(counted)
        assert hot >= 0.9 * updated

    @pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
    async def test_the_ordering_check_looks_up_the_transactions_rows(
        self, deliveries: Deliveries
    ) -> None:
        """On a table filled faster than autovacuum analyzes it (no statistics), the check
        "no earlier pending delivery of the same transaction" must stay a lookup in
        ix_webhook_deliveries_order (endpoint_id, tx_id, …). Compared as `status =
        'pending'`, the planner answered it from the partial backlog index (every pending row
        of the endpoint, per candidate: ~60 buffers a row here, 40-370 ms a claim in a
        benchmark's burst)."""
        sessionmaker = deliveries.sessionmaker
        async with unit_of_work(sessionmaker) as session:
            await session.execute(text(_NO_AUTOVACUUM))
        endpoint_id = await queued(deliveries, 3000, per_tx=5)
        async with unit_of_work(sessionmaker) as session:
            assert (await session.execute(_STATISTICS)).scalar_one() == 0  # as in a burst
            await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.event_pk <= 1000)
                .values(status=DeliveryStatus.SUCCEEDED, next_attempt_at=None)
            )
        statements, plan = await _claim_plan(sessionmaker)
        subplans = [node for node in _nodes(plan) if node.get("Subplan Name")]
        assert subplans, plan
        indexes = {node.get("Index Name") for sub in subplans for node in _nodes(sub)}
        assert indexes == {"ix_webhook_deliveries_order"}, (indexes, endpoint_id)
        # …and the claim walks the due index in its order, stopping at its limit: no bitmap
        # scan of every due row (each with its ordering check) and no sort
        assert statements[0] == str(repository._NO_BITMAP)
        assert statements[-1] == str(repository._BITMAP_AGAIN)
        scans = {(n["Node Type"], n.get("Index Name")) for n in _nodes(plan)}
        assert ("Index Scan", "ix_webhook_deliveries_due") in scans, scans
        assert not {n["Node Type"] for n in _nodes(plan)} & {"Sort", "Bitmap Heap Scan"}

    @pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
    async def test_the_one_statement_claim_keeps_the_plan(self, deliveries: Deliveries) -> None:
        """claim_due (lock, pick, lease and events in one statement, item 31) on a
        burst-filled table without statistics: each endpoint's due rows walked in order in
        ix_webhook_deliveries_endpoint_due (a claim per endpoint, so that a backlog does not
        fill it), the ordering check in ix_webhook_deliveries_order, no bitmap scan, and no
        sort but of the endpoints with room (holding fewest walked first)."""
        sessionmaker = deliveries.sessionmaker
        async with unit_of_work(sessionmaker) as session:
            await session.execute(text(_NO_AUTOVACUUM))
        await queued(deliveries, 3000, per_tx=5)
        async with unit_of_work(sessionmaker) as session:
            assert (await session.execute(_STATISTICS)).scalar_one() == 0  # as in a burst
        statements, plan = await _claim_plan(sessionmaker, one_statement=True)
        assert statements[0] == str(repository._NO_BITMAP)
        assert statements[-1] == str(repository._BITMAP_AGAIN)
        for name in ("CTE first_pass", "CTE locked"):  # the two rounds of the walk
            [walk] = [n for n in _nodes(plan) if n.get("Subplan Name") == name]
            subplans = [
                n for n in _nodes(walk)[1:] if n.get("Subplan Name", "").startswith("SubPlan")
            ]
            indexes = {node.get("Index Name") for sub in subplans for node in _nodes(sub)}
            assert indexes == {"ix_webhook_deliveries_order"}, (name, indexes)
            scans = {(n["Node Type"], n.get("Index Name")) for n in _nodes(walk)}
            assert ("Index Scan", "ix_webhook_deliveries_endpoint_due") in scans, (name, scans)
            seen = {n["Node Type"] for n in _nodes(walk)}
            assert not seen & {"Bitmap Heap Scan", "Seq Scan"}, (name, seen)
            # the only sort: the endpoints with room, holding fewest first (no row sorted)
            sorts = [n for n in _nodes(walk) if n["Node Type"] == "Sort"]
            below = [{(m["Node Type"], m.get("CTE Name")) for m in _nodes(s)[1:]} for s in sorts]
            assert all(b == {("CTE Scan", "room")} for b in below), (name, below)


class TestPlansOnABigTable:
    @pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
    @pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
    async def test_claim_and_record_read_by_index_whatever_the_plan_cache_chooses(
        self, deliveries: Deliveries, generic: bool
    ) -> None:
        """asyncpg keeps its prepared statements, and PostgreSQL may plan one generically
        after 5 executions (no parameter values known). With 50,000 finished deliveries, a
        small backlog and 50,000 events, neither claim_due's statement nor record_successes'
        reads webhook_deliveries or events by a sequential scan, under a custom plan or a
        forced generic one (plan_cache_mode = force_generic_plan)."""
        sessionmaker = deliveries.sessionmaker
        endpoint_id = await queued(deliveries, 20, per_tx=2)
        async with unit_of_work(sessionmaker) as session:
            await session.execute(_FINISHED, {"endpoint_id": endpoint_id})
            await session.execute(_EVENTS)
        async with unit_of_work(sessionmaker) as session:
            connection = await session.connection()
            for table in ("events", "webhook_deliveries", "webhook_endpoints"):
                await connection.exec_driver_sql(f"ANALYZE {table}")
        now = utcnow()
        claim, claim_params = await _sent(
            sessionmaker,
            "SKIP LOCKED",
            lambda session: repository.claim_due(
                session,
                now=now,
                lock_limit=32,
                limit=16,
                skip=[],
                busy={},
                per_endpoint=16,
                sends_per_endpoint=16,
                lease_s=30.0,
                timeout_s=10.0,
            ),
        )
        async with unit_of_work(sessionmaker) as session:
            pending = WebhookDelivery.status == DeliveryStatus.PENDING
            ids = list((await session.scalars(select(WebhookDelivery.id).where(pending))).all())
        assert len(ids) == 20
        record, record_params = await _sent(
            sessionmaker,
            "webhook_attempts",
            lambda session: repository.record_successes(
                session,
                ids,
                status_codes=[200] * len(ids),
                ats=[now] * len(ids),
                durations_ms=[5] * len(ids),
                now=now,
            ),
        )
        for statement, parameters in ((claim, claim_params), (record, record_params)):
            plan = await _plan(sessionmaker, statement, parameters, generic=generic)
            seq = {n.get("Relation Name") for n in _nodes(plan) if n["Node Type"] == "Seq Scan"}
            assert not seq & {"webhook_deliveries", "events"}, (statement, plan)


# 50,000 delivered deliveries of the endpoint (and their events, ids after the backlog's),
# and 50,000 events in all: what a claim must not scan.
_FINISHED = text(
    """
    INSERT INTO webhook_deliveries (id, endpoint_id, event_pk, event_id, event_type, status,
        attempt_count, created_at, updated_at)
    SELECT gen_random_uuid(), :endpoint_id, 1000 + g, gen_random_uuid(), 'transaction.confirmed',
        'succeeded', 1, now(), now()
    FROM generate_series(1, 50000) AS g
    """
).bindparams(bindparam("endpoint_id", type_=Uuid()))
_EVENTS = text(
    """
    INSERT INTO events (event_id, type, cursor, data, created_at)
    SELECT gen_random_uuid(), 'transaction.confirmed', g, '{}', now()
    FROM generate_series(1, 50000) AS g
    """
)


async def _sent(
    sessionmaker: async_sessionmaker[AsyncSession],
    marker: str,
    run: Callable[[AsyncSession], Awaitable[object]],
) -> tuple[str, Any]:
    """The statement (containing `marker`) that `run` sends, and its parameters (as sent)."""
    seen: list[tuple[str, Any]] = []

    def grab(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    async with unit_of_work(sessionmaker) as session:
        engine = (await session.connection()).sync_engine
        event.listen(engine, "before_cursor_execute", grab)
        try:
            await run(session)
        finally:
            event.remove(engine, "before_cursor_execute", grab)
    [found] = [(q, p) for q, p in seen if marker in q]
    return found


async def _plan(
    sessionmaker: async_sessionmaker[AsyncSession],
    statement: str,
    parameters: Any,
    *,
    generic: bool,
) -> dict[str, Any]:
    """The plan PostgreSQL runs the statement by as a prepared statement (as asyncpg sends
    it): its custom plan for these values, or (`generic`) the plan of no values, under the
    planner settings the repository sets around it."""
    async with unit_of_work(sessionmaker) as session:
        await session.execute(repository._NO_BITMAP)  # (opens the transaction SET LOCAL needs)
        connection = await session.connection()
        raw = (await connection.get_raw_connection()).driver_connection
        assert raw is not None
        return await prepared_plan(raw, statement, parameters, generic=generic)


_HOT = text(
    "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'webhook_deliveries'"
)
_NO_AUTOVACUUM = "ALTER TABLE webhook_deliveries SET (autovacuum_enabled = false)"
_STATISTICS = text("SELECT count(*) FROM pg_stats WHERE tablename = 'webhook_deliveries'")


async def _claim_plan(
    sessionmaker: async_sessionmaker[AsyncSession], *, one_statement: bool = False
) -> tuple[list[str], dict[str, Any]]:
    """The statements lock_due (or claim_due) sends, and the EXPLAIN of its query (its text
    and parameters) under the planner settings it sets."""
    seen: list[tuple[str, Any]] = []

    def grab(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    async with unit_of_work(sessionmaker) as session:
        connection = await session.connection()
        engine = connection.sync_engine
        event.listen(engine, "before_cursor_execute", grab)
        try:
            if one_statement:
                await repository.claim_due(
                    session,
                    now=utcnow(),
                    lock_limit=256,
                    limit=128,
                    skip=[],
                    busy={},
                    per_endpoint=128,
                    sends_per_endpoint=16,
                    lease_s=30.0,
                    timeout_s=10.0,
                )
            else:
                await repository.lock_due(session, now=utcnow(), limit=256)
        finally:
            event.remove(engine, "before_cursor_execute", grab)
        [(statement, parameters)] = [(q, p) for q, p in seen if "SKIP LOCKED" in q]
        await session.execute(repository._NO_BITMAP)
        result = await connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters)
        raw = result.scalar_one()
    document = json.loads(raw) if isinstance(raw, str) else raw
    plan: dict[str, Any] = document[0]["Plan"]
    return [q for q, _ in seen], plan


def _nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = [node]
    for child in node.get("Plans", []):
        found.extend(_nodes(child))
    return found
