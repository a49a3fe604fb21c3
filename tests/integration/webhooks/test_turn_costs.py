"""What a delivery loop's turn does and does not run, on both databases: a record of successes
updates no endpoint unless its failure clock runs and logs one line, fan-out runs after a
`sequenced` wake-up or a fan-out that queued, and at least every `fanout_every_s`, not every
turn; a body is the compact JSON of the event's envelope, whatever its data holds."""

import asyncio
import json
import uuid
from dataclasses import replace
from datetime import timedelta

import aiohttp
import pytest
import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.clock import utcnow
from chainflow.core.settings import Settings
from chainflow.domain.events import EventRow, envelope, sequence_pending
from chainflow.domain.webhooks import delivery, repository
from chainflow.domain.webhooks.delivery import Job, Outcome, claim, fan_out, record
from chainflow.domain.webhooks.models import WebhookEndpoint
from chainflow.infra.db.uow import unit_of_work
from chainflow.workers.webhooks import WebhookPorts, _Loop, new_webhook_http
from tests.integration.webhooks.conftest import Deliveries
from tests.support.sql_log import statements


async def _claimed(deliveries: Deliveries, *data: dict[str, object]) -> list[Job]:
    """`transaction.confirmed` events with this data (of one transaction) to an endpoint no
    one listens on, fanned out and claimed now (the first of the transaction only)."""
    await deliveries.endpoint("http://127.0.0.1:9/hook")
    await deliveries.emit(*[("transaction.confirmed", d) for d in data])
    async with unit_of_work(deliveries.sessionmaker) as session:
        await sequence_pending(session)
    now = utcnow()
    async with unit_of_work(deliveries.sessionmaker) as session:
        await fan_out(session, now=now)
        return await claim(session, deliveries.config, now=now, limit=50)


def _outcome(job: Job, status: int) -> Outcome:
    error = None if status == 200 else "non_2xx"
    return Outcome(job.delivery_id, job.endpoint_id, utcnow(), status, error, 5)


async def _clock(deliveries: Deliveries) -> object:
    async with unit_of_work(deliveries.sessionmaker) as session:
        return await session.scalar(select(WebhookEndpoint.first_failure_at))


class TestRecordOfSuccesses:
    async def test_no_endpoint_update_without_a_running_clock_and_one_log_line(
        self, deliveries: Deliveries
    ) -> None:
        jobs = await _claimed(deliveries, {"n": 1}, {"n": 2}, {"n": 3})
        outcomes = [_outcome(jobs[0], 200), _outcome(jobs[1], 200), _outcome(jobs[2], 500)]
        with (
            statements(deliveries.sessionmaker) as seen,
            structlog.testing.capture_logs() as logs,
        ):
            async with unit_of_work(deliveries.sessionmaker) as session:
                # the successes alone: no failure clock runs, none to stop
                await record(session, outcomes[:2], deliveries.config, now=utcnow())
        assert not [s for s in seen if s.startswith("UPDATE webhook_endpoints")]
        assert [e["event"] for e in logs] == ["webhook.delivered"]
        assert logs[0]["count"] == 2
        assert logs[0]["endpoints"] == {str(jobs[0].endpoint_id): 2}
        with structlog.testing.capture_logs() as logs:
            async with unit_of_work(deliveries.sessionmaker) as session:
                await record(session, outcomes[2:], deliveries.config, now=utcnow())
        [failed] = logs
        assert failed["event"] == "webhook.attempted"
        assert (failed["status_code"], failed["error"]) == (500, "non_2xx")
        assert failed["delivery_id"] == str(jobs[2].delivery_id)
        assert await _clock(deliveries) is not None  # a failure starts the clock

    async def test_a_success_stops_a_clock_another_worker_started(
        self, deliveries: Deliveries
    ) -> None:
        [job] = await _claimed(deliveries, {})
        async with unit_of_work(deliveries.sessionmaker) as session:  # after the claim
            await session.execute(
                update(WebhookEndpoint).values(first_failure_at=utcnow() - timedelta(hours=1))
            )
        async with unit_of_work(deliveries.sessionmaker) as session:
            await record(session, [_outcome(job, 200)], deliveries.config, now=utcnow())
        assert await _clock(deliveries) is None


def _hourly_fan_out(deliveries: Deliveries, http: aiohttp.ClientSession) -> WebhookPorts:
    """A loop's ports whose fan-out runs by the clock only once an hour."""
    config = replace(deliveries.config, timeout_s=0.5)
    return WebhookPorts(deliveries.sessionmaker, http, config, fanout_every_s=3600)


class TestFanOutTurns:
    async def test_fan_out_on_a_wake_up_after_queueing_and_every_fanout_every_s(
        self, deliveries: Deliveries, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        await deliveries.endpoint("http://127.0.0.1:9/hook")
        http = new_webhook_http(Settings(webhook_allow_private_urls=True))
        ports = _hourly_fan_out(deliveries, http)
        fanned: list[int] = []
        real = delivery.fan_out_batch

        async def counted(session: AsyncSession, *, now: object) -> delivery.FanOut:
            result = await real(session, now=now)  # type: ignore[arg-type]
            fanned.append(result.queued)
            return result

        monkeypatch.setattr(delivery, "fan_out_batch", counted)
        loop = _Loop(ports, asyncio.Event())
        try:
            await loop.turn()
            assert fanned == [0]  # the first turn looks
            await deliveries.emit(("transaction.confirmed", {}))
            async with unit_of_work(deliveries.sessionmaker) as session:
                await sequence_pending(session)  # as another process's sequencer: no wake-up
            await loop.turn()
            assert fanned == [0]  # not every turn
            loop.fanned_at -= 3600
            await loop.turn()
            assert fanned == [0, 1]  # at least every fanout_every_s
            await loop.turn()
            assert fanned == [0, 1, 0]  # after one that queued: more may be behind
            await loop.turn()
            assert fanned == [0, 1, 0]
            await deliveries.emit(("transaction.confirmed", {}))
            async with unit_of_work(deliveries.sessionmaker) as session:
                await sequence_pending(session)
            loop.sequenced()  # this process's sequencer rang
            await loop.turn()
            assert fanned == [0, 1, 0, 1]
        finally:
            loop.stop.set()
            if loop.in_flight:
                await asyncio.wait(list(loop.in_flight))
            await http.close()
        assert len(await deliveries.deliveries()) == 2

    async def test_a_full_batch_that_matches_nothing_does_not_hold_back_the_next(
        self, deliveries: Deliveries, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A batch of events none of which the endpoint takes queues nothing: fan-out must still
        look again next turn (the batch was full), not wait `fanout_every_s` per batch (a
        burst on another chain held the endpoint's own events back by a second per 1,000)."""
        monkeypatch.setattr(delivery, "FANOUT_BATCH", 2)
        await deliveries.endpoint("http://127.0.0.1:9/hook", events=["transaction.confirmed"])
        http = new_webhook_http(Settings(webhook_allow_private_urls=True))
        ports = _hourly_fan_out(deliveries, http)
        loop = _Loop(ports, asyncio.Event())
        try:
            await loop.turn()
            await deliveries.emit(
                ("transaction.submitted", {}),
                ("transaction.mined", {}),
                ("transaction.confirmed", {}),
            )
            async with unit_of_work(deliveries.sessionmaker) as session:
                await sequence_pending(session)
            loop.sequenced()  # one wake-up for the three events
            for _ in range(3):
                await loop.turn()
            assert len(await deliveries.deliveries()) == 1
        finally:
            loop.stop.set()
            if loop.in_flight:
                await asyncio.wait(list(loop.in_flight))
            await http.close()


class TestBody:
    @pytest.mark.parametrize(
        "data",
        [
            {"transaction": {"status": "confirmed", "value": "1", "nonce": 7, "error": None}},
            {"text": 'déjà vu ✓ \u2028 \x7f " \\ /', "ratio": 0.1, "big": 2**70, "f": 1e16},
            {"nested": [[{"a": [True, False, None, -1]}]], "empty": {}},
        ],
    )
    async def test_the_body_is_the_compact_json_of_the_stored_envelope(
        self, deliveries: Deliveries, data: dict[str, object]
    ) -> None:
        [job] = await _claimed(deliveries, data)
        [row] = await deliveries.rows(EventRow)
        expected = json.dumps(envelope(row), separators=(",", ":"), default=str).encode()
        assert job.body == expected
        assert json.loads(job.body)["data"] == data


class TestFanOutReadsTheTypesItQueues:
    async def test_only_the_events_an_endpoint_glob_matches_are_read_on_postgres(
        self, deliveries: Deliveries
    ) -> None:
        """On PostgreSQL fan-out reads only the events whose type one of the endpoints' globs
        matches (LIKE ANY): an endpoint on `transaction.confirmed` read the 5 status changes
        of each transaction. `%`, `_` and `\\` in a glob are themselves, as in the glob."""
        kinds = ["transaction.confirmed", "transaction.mined", "a_b.c", "axb.c", "x%", "xy"]
        kinds += ["back\\slash", "backxslash", "wallet.low_balance"]
        await deliveries.emit(*[(kind, {}) for kind in kinds])
        async with unit_of_work(deliveries.sessionmaker) as session:
            await sequence_pending(session)
        globs = ["transaction.confirmed", "a_b*", "x%", "back\\slash"]
        async with unit_of_work(deliveries.sessionmaker) as session:
            heads = await repository.event_heads_after(session, 0, limit=100, type_globs=globs)
            every = await repository.event_heads_after(session, 0, limit=100)
            dialect = session.get_bind().dialect.name
        assert [h.type for h in every] == kinds
        matched = ["transaction.confirmed", "a_b.c", "x%", "back\\slash"]
        assert [h.type for h in heads] == (matched if dialect == "postgresql" else kinds)


class TestClaimLocksWhatItCanUse:
    @pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
    async def test_with_one_endpoint_a_claim_locks_no_more_than_its_room(
        self, deliveries: Deliveries
    ) -> None:
        """With one enabled endpoint, holding 10 of its 16: a claim locks the 6 it can send,
        not twice its limit (each lock a WAL record, rows another worker's claim steps
        over): another claim meanwhile gets the rest."""
        endpoint, _ = await deliveries.endpoint("http://127.0.0.1:9/hook")
        await deliveries.emit(*[("transaction.confirmed", {"n": n}) for n in range(40)])
        async with unit_of_work(deliveries.sessionmaker) as session:
            await sequence_pending(session)
            await fan_out(session, now=utcnow())
        now = utcnow()
        async with unit_of_work(deliveries.sessionmaker) as session:
            jobs = await claim(
                session,
                deliveries.config,
                now=now,
                limit=20,
                busy={endpoint.id: 10},
                per_endpoint=16,
                enabled_endpoints=1,
            )
            assert len(jobs) == 6
            async with unit_of_work(deliveries.sessionmaker) as other:
                rest = await repository.lock_due(other, now=now, limit=100)
            assert len(rest) == 34

    async def test_the_endpoint_count_is_read_again_while_sends_are_in_flight(
        self, deliveries: Deliveries
    ) -> None:
        """The count bounds a claim's locks (one endpoint: its room, 0 at its cap); read only
        while idle, it stayed 1 while that endpoint kept the process busy, and an endpoint
        created meanwhile was not claimed until the backlog drained."""
        await deliveries.endpoint("http://127.0.0.1:9/first")
        http = new_webhook_http(Settings(webhook_allow_private_urls=True))
        loop = _Loop(_hourly_fan_out(deliveries, http), asyncio.Event())
        sending = asyncio.create_task(asyncio.Event().wait())  # a send still in flight
        try:
            await loop.turn()
            assert loop.endpoints == 1
            loop.in_flight[sending] = uuid.uuid4()  # type: ignore[index]  # a stand-in
            await deliveries.endpoint("http://127.0.0.1:9/second")
            loop.endpoints_read_at -= 1.0  # the cached count is older than its half second
            await loop.turn()
            assert loop.endpoints == 2
        finally:
            sending.cancel()
            loop.in_flight.clear()
            await http.close()


class TestOneStatementOnPostgres:
    """docs/performance.md item 31: on PostgreSQL a claim locks, picks, leases and reads its
    events in one statement, and a record of successes moves the deliveries and stores the
    attempts in one; both leave what the several statements left."""

    @pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
    async def test_a_claim_is_one_statement_between_its_planner_settings(
        self, deliveries: Deliveries
    ) -> None:
        await deliveries.endpoint("http://127.0.0.1:9/hook")
        await deliveries.emit(*[("transaction.confirmed", {"n": n}) for n in range(5)])
        async with unit_of_work(deliveries.sessionmaker) as session:
            await sequence_pending(session)
            await fan_out(session, now=utcnow())
        with statements(deliveries.sessionmaker) as seen:
            async with unit_of_work(deliveries.sessionmaker) as session:
                jobs = await claim(session, deliveries.config, now=utcnow(), limit=50)
        assert len(jobs) == 5
        sent = [s for s in seen if s not in ("BEGIN", "COMMIT")]  # (not sent as statements)
        assert sent[0] == str(repository._NO_BITMAP)
        assert sent[1].startswith("WITH room AS MATERIALIZED")
        assert sent[2] == str(repository._BITMAP_AGAIN)
        # then the endpoints' secrets: no lease UPDATE, no read of the events
        assert len(sent) == 4, sent
        assert sent[3].startswith("SELECT webhook_endpoints."), sent
        stored = {d.id: d.leased_until for d in await deliveries.deliveries()}
        assert {job.delivery_id: job.lease_until for job in jobs} == stored

    async def test_leases_count_the_waves_of_sends_ahead_and_the_held_jobs(
        self, deliveries: Deliveries
    ) -> None:
        """An endpoint with 3 jobs held, 10 due, at most 10 held and 4 sent at once: 7 are
        claimed, positions 3-9 behind what is held, so waves 0,1,1,1,1,2,2 (each a timeout
        longer), in due order; the rest stay unleased."""
        endpoint, _ = await deliveries.endpoint("http://127.0.0.1:9/hook")
        await deliveries.emit(*[("transaction.confirmed", {"n": n}) for n in range(10)])
        async with unit_of_work(deliveries.sessionmaker) as session:
            await sequence_pending(session)
            await fan_out(session, now=utcnow())
        now = utcnow()
        config = deliveries.config
        async with unit_of_work(deliveries.sessionmaker) as session:
            jobs = await claim(
                session,
                config,
                now=now,
                limit=20,
                busy={endpoint.id: 3},
                per_endpoint=10,
                sends_per_endpoint=4,
            )
        waves = [0, 1, 1, 1, 1, 2, 2]
        expected = [now + timedelta(seconds=config.lease_s + w * config.timeout_s) for w in waves]
        assert [job.lease_until for job in jobs] == expected
        rows = {d.id: d for d in await deliveries.deliveries()}
        assert [rows[job.delivery_id].leased_until for job in jobs] == expected
        in_due_order = sorted(rows.values(), key=lambda d: d.event_pk)
        assert [job.delivery_id for job in jobs] == [d.id for d in in_due_order[:7]]
        assert all(d.leased_until is None for d in in_due_order[7:])

    @pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
    async def test_a_record_of_successes_is_one_statement(self, deliveries: Deliveries) -> None:
        jobs = await _claimed(deliveries, {"n": 1}, {"n": 2})
        async with unit_of_work(deliveries.sessionmaker) as session:  # another turn's claim
            jobs += await claim(session, deliveries.config, now=utcnow(), limit=50)
        outcomes = [_outcome(job, 200) for job in jobs]
        with statements(deliveries.sessionmaker) as seen:
            async with unit_of_work(deliveries.sessionmaker) as session:
                await record(session, outcomes, deliveries.config, now=utcnow())
        [sent] = [s for s in seen if s not in ("BEGIN", "COMMIT")]  # 3 before: lock, UPDATE, INSERT
        assert sent.startswith("WITH locked"), sent
        stored = await deliveries.deliveries()
        assert [
            (d.status.value, d.attempt_count, d.leased_until, d.next_attempt_at) for d in stored
        ] == [("succeeded", 1, None, None)] * 2
        attempts = await deliveries.attempts()
        assert sorted(
            (a.delivery_id, a.status_code, a.error, a.duration_ms) for a in attempts
        ) == sorted((o.delivery_id, 200, None, 5) for o in outcomes)
        assert {a.at for a in attempts} == {o.at for o in outcomes}
