"""A webhook delivery loop over a real database, delivering to receivers on 127.0.0.1."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.core.settings import Settings
from chainflow.domain.events import EventRow, append
from chainflow.domain.webhooks import service
from chainflow.domain.webhooks.delivery import DeliveryConfig
from chainflow.domain.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from chainflow.domain.webhooks.schemas import WebhookCreate
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.signing.keystore import MasterKey
from chainflow.workers.outbox import OutboxConfig, run_outbox
from chainflow.workers.webhooks import WebhookPorts, new_webhook_http, run_webhooks

SHORT_SCHEDULE = (0.2, 0.2, 0.2, 0.2, 0.2)


@dataclass
class Deliveries:
    """Endpoints, events and the loop that delivers them."""

    sessionmaker: async_sessionmaker[AsyncSession]
    master: MasterKey
    config: DeliveryConfig

    async def endpoint(self, url: str, **fields: Any) -> tuple[WebhookEndpoint, str]:
        body = WebhookCreate.model_validate({"url": url, **fields})
        async with unit_of_work(self.sessionmaker) as session:
            return await service.create_endpoint(session, body, master=self.master)

    async def emit(self, *events: tuple[str, dict[str, Any]], **fields: Any) -> list[str]:
        """Append events in one unit of work (as a status change does); their envelope ids."""
        async with unit_of_work(self.sessionmaker) as session:
            rows = [append(session, kind, data=data, **fields) for kind, data in events]
            await session.flush()
            return [f"evt_{row.event_id.hex}" for row in rows]

    async def rows(self, model: Any) -> list[Any]:
        async with unit_of_work(self.sessionmaker) as session:
            return list(await session.scalars(select(model)))

    async def deliveries(self) -> list[WebhookDelivery]:
        rows: list[WebhookDelivery] = await self.rows(WebhookDelivery)
        return rows

    async def attempts(self) -> list[WebhookAttempt]:
        rows: list[WebhookAttempt] = await self.rows(WebhookAttempt)
        return rows

    async def events(self) -> list[EventRow]:
        rows: list[EventRow] = await self.rows(EventRow)
        return rows

    @asynccontextmanager
    async def running(
        self, *, allow_private: bool = True, concurrency: int = 8, **config: Any
    ) -> AsyncIterator[None]:
        """The delivery loop, as a worker runs it, until the block ends."""
        settings = Settings(webhook_allow_private_urls=allow_private)
        http = new_webhook_http(settings)
        ports = WebhookPorts(
            sessionmaker=self.sessionmaker,
            http=http,
            config=replace(self.config, **config),
            concurrency=concurrency,
            poll_s=0.05,
        )
        stop = asyncio.Event()
        outbox = OutboxConfig(poll_s=0.05)
        tasks = [
            asyncio.create_task(run_outbox(self.sessionmaker, stop, outbox)),
            asyncio.create_task(run_webhooks(ports, stop)),
        ]
        try:
            yield
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
            await http.close()


@pytest.fixture
def deliveries(sessionmaker: async_sessionmaker[AsyncSession], master_key: MasterKey) -> Deliveries:
    config = DeliveryConfig(
        master=master_key,
        retry_schedule=SHORT_SCHEDULE,
        disable_after_s=3600,
        timeout_s=3,
        lease_margin_s=1,
    )
    return Deliveries(sessionmaker, master_key, config)


def tx_events(statuses: list[str]) -> list[tuple[str, dict[str, Any]]]:
    return [(f"transaction.{s}", {"transaction": {"status": s}}) for s in statuses]
