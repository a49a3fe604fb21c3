"""The delivery loop costs next to nothing while no endpoint is enabled (issue 17): no
database work per turn but a cached check, however often events wake it; an endpoint
created while it runs still gets its events within about a second."""

import asyncio
import contextlib
import time
import uuid
from typing import Any

from sqlalchemy import event

from chainflow.core.settings import Settings
from chainflow.domain.events import sequence_pending
from chainflow.domain.events.wakeups import sequenced
from chainflow.infra.db.uow import unit_of_work
from chainflow.workers.webhooks import WebhookPorts, new_webhook_http, run_webhooks
from tests.integration.webhooks.conftest import Deliveries, tx_events
from tests.support.polling import eventually
from tests.support.receiver import receiver


async def test_idle_without_endpoints_then_a_new_one_is_served_within_a_second(
    deliveries: Deliveries,
) -> None:
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))  # (conn, cursor, statement, ...)

    engine = deliveries.sessionmaker.kw["bind"].sync_engine
    http = new_webhook_http(Settings(webhook_allow_private_urls=True))
    ports = WebhookPorts(
        sessionmaker=deliveries.sessionmaker, http=http, config=deliveries.config, poll_s=0.05
    )
    stop = asyncio.Event()
    loop = asyncio.create_task(run_webhooks(ports, stop))
    event.listen(engine, "before_cursor_execute", count)
    try:

        async def pruned() -> bool:  # its first turn, then its first prune, have run
            return any("FROM webhook_deliveries" in s for s in statements)

        await eventually(pruned, timeout_s=10, interval_s=0.01)
        statements.clear()
        try:
            started = time.monotonic()
            while time.monotonic() - started < 1.0:  # events sequenced in this process wake it
                sequenced.ring()
                await asyncio.sleep(0.01)  # events' pace (100 a second), not a wait for them
        finally:
            event.remove(engine, "before_cursor_execute", count)
        # A turn read the head, the endpoints and the due deliveries: ~80 wakes, ~240
        # statements. Now: the endpoint check every 0.5 s.
        assert len(statements) <= 4, statements

        async with receiver() as hook:
            await deliveries.endpoint(hook.url, events=["transaction.*"])
            created = time.monotonic()
            tx = uuid.uuid4()
            await deliveries.emit(*tx_events(["queued"]), tx_id=tx)
            async with unit_of_work(deliveries.sessionmaker) as session:
                await sequence_pending(session)  # the outbox loop's step, not running here
            await eventually(lambda: _received(hook), timeout_s=5, interval_s=0.02)
            assert time.monotonic() - created < 1.5
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(loop, timeout=30)
        await http.close()


async def _received(hook: Any) -> bool:
    return bool(hook.received)
