"""Fairness between endpoints (audit: with two workers, two slow receivers and four endpoints
with ~55k due deliveries, a `webhook.test` to a healthy receiver arrived after 123 s). Two
slow endpoints used up a worker's held jobs (each could hold half of them), and a claim took
the oldest due rows over every endpoint, so the backlogged endpoints filled every claim."""

import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text

from chainflow.core.clock import utcnow
from chainflow.domain.events import sequence_pending
from chainflow.domain.webhooks import repository
from chainflow.domain.webhooks.delivery import claim
from chainflow.domain.webhooks.repository import EventHead
from chainflow.infra.db.uow import unit_of_work
from tests.integration.webhooks.conftest import Deliveries
from tests.integration.webhooks.test_claim_writes import queued
from tests.support.polling import eventually
from tests.support.receiver import Receiver, receiver


class TestFairness:
    async def test_a_healthy_endpoint_is_served_while_two_slow_ones_have_a_backlog(
        self, deliveries: Deliveries
    ) -> None:
        """4 slots (16 held jobs an endpoint, 32 a worker before), two receivers answering in
        1 s with 150 due deliveries each: the healthy receiver's event arrives within a few
        seconds, while both backlogs remain (before: after them, ~75 s)."""
        async with receiver() as slow_a, receiver() as slow_b, receiver() as healthy:
            slow_a.delay_s = slow_b.delay_s = 1.0
            await deliveries.endpoint(slow_a.url, events=["a.*"])
            await deliveries.endpoint(slow_b.url, events=["b.*"])
            await deliveries.endpoint(healthy.url, events=["healthy.*"])
            await deliveries.emit(*[(f"{k}.e{i}", {}) for i in range(150) for k in "ab"])
            # a lease's margin as in production (20 s): a job waits up to a slow send (1 s) for
            # a slot, more than the fixture's 1 s margin leaves it
            async with deliveries.running(concurrency=4, lease_margin_s=20):

                async def both_busy() -> bool:
                    return bool(slow_a.received and slow_b.received)

                await eventually(both_busy, timeout_s=30)
                [sent] = await deliveries.emit(("healthy.ping", {}))
                started = time.monotonic()

                async def arrived() -> bool:
                    return healthy.seen(sent) == 1

                await eventually(arrived, timeout_s=20, what="the healthy endpoint's event")
                took = time.monotonic() - started
                # both backlogs remain
                assert _received(slow_a) < 150
                assert _received(slow_b) < 150
            assert took < 5, took

    async def test_a_claim_serves_the_endpoint_holding_fewest_first(
        self, deliveries: Deliveries
    ) -> None:
        """Two endpoints with 300 due deliveries each, older than a third endpoint's one: a
        claim of 8 takes the third's, and splits the rest between the two, the one this
        process holds 3 of getting fewer (before: 8 of the oldest, none of the third's)."""
        old = [await _queued(deliveries, 300, age_s=60) for i in range(2)]
        fresh = await _queued(deliveries, 1, age_s=0)
        async with unit_of_work(deliveries.sessionmaker) as session:
            jobs = await claim(
                session,
                deliveries.config,
                now=utcnow(),
                limit=8,
                busy={old[0]: 3},
                per_endpoint=128,
                sends_per_endpoint=16,
                enabled_endpoints=3,
            )
        # in the order of how many of its endpoint's are ahead: old[1] 0-4, fresh 0, old[0] 3-4
        counts = [[j.endpoint_id for j in jobs].count(e) for e in (fresh, *old)]
        assert counts == [1, 2, 5]

    @pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
    @pytest.mark.parametrize("lock_limit", [1, 8])
    async def test_a_claim_locks_no_more_rows_than_its_lock_limit_over_many_endpoints(
        self, deliveries: Deliveries, lock_limit: int
    ) -> None:
        """40 endpoints with 3 due deliveries each: a claim with `lock_limit` 1 (or 8) holds
        at most that many rows locked, as counted by another session stepping over locked
        rows (before: a row of every endpoint, 40, each endpoint's share being at least 1)."""
        for _ in range(40):
            await queued(deliveries, 3)
        async with unit_of_work(deliveries.sessionmaker) as session:
            claimed = await repository.claim_due(
                session,
                now=utcnow(),
                lock_limit=lock_limit,
                limit=lock_limit,
                skip=[],
                busy={},
                per_endpoint=16,
                sends_per_endpoint=16,
                lease_s=30.0,
                timeout_s=3.0,
            )
            async with unit_of_work(deliveries.sessionmaker) as other:
                free = await other.scalar(_UNLOCKED)
        assert len(claimed) == lock_limit
        assert 120 - free <= lock_limit, 120 - free


_UNLOCKED = text(
    "SELECT count(*) FROM (SELECT id FROM webhook_deliveries FOR UPDATE SKIP LOCKED) AS free"
)


def _received(hook: Receiver) -> int:
    return len({r.msg_id for r in hook.received})


async def _queued(deliveries: Deliveries, count: int, *, age_s: float) -> uuid.UUID:
    """An endpoint with `count` deliveries due since `age_s` ago, of new sequenced events."""
    endpoint, _ = await deliveries.endpoint("http://127.0.0.1:9/hook")
    ids = set(await deliveries.emit(*[("transaction.confirmed", {}) for _ in range(count)]))
    async with unit_of_work(deliveries.sessionmaker) as session:
        await sequence_pending(session)
    heads = [
        EventHead(row.id, row.event_id, row.type, row.cursor, None, None, None, None)
        for row in await deliveries.events()
        if f"evt_{row.event_id.hex}" in ids
    ]
    async with unit_of_work(deliveries.sessionmaker) as session:
        now = utcnow() - timedelta(seconds=age_s)
        await repository.add_deliveries(session, endpoint.id, heads, now=now)
    return endpoint.id
