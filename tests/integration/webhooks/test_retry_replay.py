"""Retry and replay never send an event twice at once (issue 16): a retry of a delivery a worker
is sending is refused (409), a retry beside another pending delivery of the same event is
refused, and a replay skips events that have a pending delivery and those fan-out has not
reached yet. On both databases, with a real receiver on 127.0.0.1."""

import asyncio
import uuid

import pytest
from sqlalchemy import text, update

from chainflow.core.clock import utcnow
from chainflow.domain.events import sequence_pending
from chainflow.domain.webhooks import repository, service
from chainflow.domain.webhooks.delivery import claim, fan_out
from chainflow.domain.webhooks.errors import DeliveryAlreadyPending, DeliveryInFlight
from chainflow.domain.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from chainflow.domain.webhooks.schemas import DeliveryRead, ReplayRequest, ReplayResult
from chainflow.infra.db.uow import unit_of_work
from tests.integration.webhooks.conftest import Deliveries
from tests.support.polling import eventually
from tests.support.receiver import Received, receiver


async def retry(
    deliveries: Deliveries, endpoint_id: uuid.UUID, delivery_id: uuid.UUID
) -> DeliveryRead:
    """As the API route does."""
    async with unit_of_work(deliveries.sessionmaker) as session:
        endpoint = await service.get_endpoint(session, endpoint_id)
        return await service.retry_delivery(session, endpoint, delivery_id)


async def replay(deliveries: Deliveries, endpoint_id: uuid.UUID, after: int = 0) -> ReplayResult:
    async with unit_of_work(deliveries.sessionmaker) as session:
        endpoint = await service.get_endpoint(session, endpoint_id, for_update=True)
        return await service.replay(session, endpoint, ReplayRequest(after=after))


async def sequence_and_fan_out(deliveries: Deliveries) -> int:
    async with unit_of_work(deliveries.sessionmaker) as session:
        await sequence_pending(session)
    async with unit_of_work(deliveries.sessionmaker) as session:
        return await fan_out(session, now=utcnow())


async def set_sealed(deliveries: Deliveries, endpoint_id: uuid.UUID, sealed: bytes) -> None:
    async with unit_of_work(deliveries.sessionmaker) as session:
        await session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id)
            .values(sealed_secrets=sealed)
        )


async def statuses(deliveries: Deliveries) -> list[DeliveryStatus]:
    return [d.status for d in await deliveries.deliveries()]


class TestRetry:
    async def test_a_delivery_being_sent_is_refused_and_sent_once(
        self, deliveries: Deliveries
    ) -> None:
        async with receiver() as hook:
            hook.delay_s = 1.5  # the receiver's latency: the attempt stays in flight meanwhile
            endpoint, _ = await deliveries.endpoint(hook.url)
            [msg_id] = await deliveries.emit(("transaction.confirmed", {"tx": "a"}))
            async with deliveries.running():
                await eventually(lambda: _arrived(hook.received), timeout_s=30)
                [row] = await deliveries.deliveries()
                with pytest.raises(DeliveryInFlight) as refused:
                    await retry(deliveries, endpoint.id, row.id)
                assert "being attempted now" in refused.value.detail

                async def succeeded() -> bool:
                    return await statuses(deliveries) == [DeliveryStatus.SUCCEEDED]

                await eventually(succeeded, timeout_s=30)
                assert hook.seen(msg_id) == 1
                # Once recorded, a retry sends it again, with the same webhook-id.
                again = await retry(deliveries, endpoint.id, row.id)
                assert again.status == DeliveryStatus.PENDING
                await eventually(lambda: _arrived(hook.received, 2), timeout_s=30)
            assert [r.msg_id for r in hook.received] == [msg_id, msg_id]

    async def test_a_delivery_whose_secret_cannot_be_read_is_not_left_leased(
        self, deliveries: Deliveries
    ) -> None:
        async with receiver() as hook:
            endpoint, _ = await deliveries.endpoint(hook.url)
            [msg_id] = await deliveries.emit(("transaction.confirmed", {"tx": "a"}))
            assert await sequence_and_fan_out(deliveries) == 1
            sealed = endpoint.sealed_secrets
            await set_sealed(deliveries, endpoint.id, bytes(b ^ 0xFF for b in sealed))
            async with unit_of_work(deliveries.sessionmaker) as session:
                assert await claim(session, deliveries.config, now=utcnow(), limit=10) == []
            [row] = await deliveries.deliveries()
            assert row.status is DeliveryStatus.PENDING
            assert row.leased_until is None  # released: a retry is not refused for 30 s
            assert row.attempt_count == 0
            await set_sealed(deliveries, endpoint.id, sealed)  # the operator fixed the key
            again = await retry(deliveries, endpoint.id, row.id)  # no DeliveryInFlight
            assert again.status == "pending"
            async with deliveries.running():

                async def delivered() -> bool:
                    return len(hook.accepted()) == 1

                await eventually(delivered, timeout_s=30)
            assert [r.msg_id for r in hook.received] == [msg_id]

    async def test_a_retry_beside_a_pending_replay_of_the_event_is_refused(
        self, deliveries: Deliveries
    ) -> None:
        async with receiver() as hook:
            endpoint, _ = await deliveries.endpoint(hook.url)
            [msg_id] = await deliveries.emit(("transaction.confirmed", {"tx": "b"}))
            async with deliveries.running():
                await eventually(lambda: _arrived(hook.received), timeout_s=30)

                async def succeeded() -> bool:
                    return await statuses(deliveries) == [DeliveryStatus.SUCCEEDED]

                await eventually(succeeded, timeout_s=30)
            [first] = await deliveries.deliveries()
            assert (await replay(deliveries, endpoint.id)).queued == 1  # no worker runs now
            [second] = [d for d in await deliveries.deliveries() if d.id != first.id]
            with pytest.raises(DeliveryAlreadyPending) as refused:
                await retry(deliveries, endpoint.id, first.id)
            assert refused.value.extra == {"pending_delivery_id": str(second.id)}
            # The pending one itself may be retried: it is made due now, still one of it.
            assert (await retry(deliveries, endpoint.id, second.id)).status == "pending"
            assert sorted(await statuses(deliveries)) == ["pending", "succeeded"]
        assert hook.seen(msg_id) == 1


class TestReplay:
    async def test_events_with_a_pending_delivery_are_skipped(self, deliveries: Deliveries) -> None:
        endpoint, _ = await deliveries.endpoint("http://127.0.0.1:9/hook")
        await deliveries.emit(*[(f"transaction.e{i}", {}) for i in range(3)])
        assert await sequence_and_fan_out(deliveries) == 3
        result = await replay(deliveries, endpoint.id)
        assert (result.queued, result.already_pending) == (0, 3)
        assert len(await deliveries.deliveries()) == 3

    async def test_events_fan_out_has_not_reached_are_left_to_it(
        self, deliveries: Deliveries
    ) -> None:
        endpoint, _ = await deliveries.endpoint("http://127.0.0.1:9/hook")
        await deliveries.emit(*[(f"transaction.e{i}", {}) for i in range(3)])
        async with unit_of_work(deliveries.sessionmaker) as session:
            await sequence_pending(session)
        assert (await replay(deliveries, endpoint.id)).queued == 0
        assert await sequence_and_fan_out(deliveries) == 3
        rows: list[WebhookDelivery] = await deliveries.deliveries()
        assert len({row.event_pk for row in rows}) == len(rows) == 3

    async def test_a_disabled_endpoint_gets_every_event_and_each_once_more_later(
        self, deliveries: Deliveries
    ) -> None:
        endpoint, _ = await deliveries.endpoint("http://127.0.0.1:9/hook")
        async with unit_of_work(deliveries.sessionmaker) as session:
            row = await service.get_endpoint(session, endpoint.id, for_update=True)
            await service.update_endpoint(session, row, {"enabled": False})
        await deliveries.emit(*[(f"transaction.e{i}", {}) for i in range(3)])
        assert await sequence_and_fan_out(deliveries) == 0  # fan-out skips it while disabled
        assert (await replay(deliveries, endpoint.id)).queued == 3
        assert (await replay(deliveries, endpoint.id)).queued == 0
        async with unit_of_work(deliveries.sessionmaker) as session:
            await session.execute(update(WebhookDelivery).values(status=DeliveryStatus.SUCCEEDED))
        # Delivered once: a replay queues them again (the receiver asked for them).
        assert (await replay(deliveries, endpoint.id)).queued == 3


async def _arrived(received: list[Received], count: int = 1) -> bool:
    return len(received) >= count


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
class TestLockOrder:
    async def test_a_retry_beside_a_worker_recording_the_same_delivery_waits_no_deadlock(
        self, deliveries: Deliveries
    ) -> None:
        """A worker's `record` locks its deliveries, then updates their endpoints; a retry
        takes the same order, so it waits for the record instead of deadlocking with it."""
        endpoint, _ = await deliveries.endpoint("http://127.0.0.1:9/hook")
        await deliveries.emit(("transaction.failed", {}))
        assert await sequence_and_fan_out(deliveries) == 1
        [row] = await deliveries.deliveries()
        async with unit_of_work(deliveries.sessionmaker) as session:
            await session.execute(update(WebhookDelivery).values(status=DeliveryStatus.FAILED))
        async with unit_of_work(deliveries.sessionmaker) as worker:
            await repository.deliveries_by_id(worker, [row.id])  # as `record` does first
            retrying = asyncio.create_task(retry(deliveries, endpoint.id, row.id))
            await eventually(lambda: _waiting_on_a_lock(deliveries), timeout_s=20)
            await worker.execute(  # then the endpoint's failure clock, as `record` does
                update(WebhookEndpoint)
                .where(WebhookEndpoint.id == endpoint.id)
                .values(first_failure_at=utcnow())
            )
        retried = await asyncio.wait_for(retrying, timeout=20)
        assert retried.status == DeliveryStatus.PENDING


async def _waiting_on_a_lock(deliveries: Deliveries) -> bool:
    async with deliveries.sessionmaker() as session:
        waiting = await session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
        return bool(waiting)
