"""Workers SIGKILLed while they deliver webhooks: every transaction event still reaches the
receiver, and a delivery sent twice carries the same webhook-id and body both times."""

import asyncio
import random
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from chainflow.domain.events import EventRow
from chainflow.domain.transactions.state import TxStatus
from chainflow.infra.db.uow import unit_of_work
from tests.chaos.cluster import Cluster, open_cluster
from tests.support.databases import REDIS_URL
from tests.support.polling import eventually
from tests.support.receiver import Receiver, receiver

pytestmark = pytest.mark.timeout(300)
# A killed worker's claims come back after the lease: timeout 1 s + the 20 s margin.
RETRY_SCHEDULE = ",".join(["0.5"] * 40)


async def add_endpoint(cluster: Cluster, url: str) -> str:
    headers = {"Authorization": f"Bearer {cluster.token}"}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.post(
            f"{cluster.api_url}/v1/webhooks", json={"url": url, "events": ["transaction.*"]}
        ) as response,
    ):
        assert response.status == 201, await response.text()
        secret: str = (await response.json())["secret"]
        return secret


async def event_ids(cluster: Cluster) -> set[str]:
    async with unit_of_work(cluster.sessionmaker) as session:
        rows = (await session.scalars(select(EventRow.event_id))).all()
    return {f"evt_{event_id.hex}" for event_id in rows}


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
async def test_sigkilled_workers_lose_no_delivery(
    database_url: str, anvil: str, tmp_path: Path
) -> None:
    rng = random.Random(3)  # noqa: S311 - reproducible chaos
    async with (
        receiver() as hook,
        open_cluster(
            tmp_path,
            database_url,
            anvil,
            redis_url=REDIS_URL,
            workers=2,
            wallets=3,
            webhook_allow_private_urls="true",
            webhook_retry_schedule=RETRY_SCHEDULE,
            webhook_timeout_s="1",
        ) as cluster,
    ):
        hook.delay_s = 0.05  # deliveries stay in flight long enough to be cut off
        secret = await add_endpoint(cluster, hook.url)
        load = asyncio.create_task(cluster.submit(10))
        for _ in range(4):
            await asyncio.sleep(rng.uniform(0.3, 1.0))  # a random moment, not synchronisation
            cluster.kill(rng.choice(cluster.alive("worker")))
            cluster.start_worker()  # the cluster's settings hold the webhook ones
        await load
        await cluster.settle(timeout_s=120)
        assert await cluster.count(TxStatus.CONFIRMED) == 30
        expected = await event_ids(cluster)

        async def delivered() -> bool:
            return {r.msg_id for r in hook.accepted()} >= expected

        await eventually(delivered, timeout_s=120, interval_s=0.2)
        assert_duplicates_identical(hook)
        assert all(r.verifies_with(secret) for r in hook.received)


def assert_duplicates_identical(hook: Receiver) -> None:
    bodies: dict[str, bytes] = {}
    for r in hook.received:
        assert bodies.setdefault(r.msg_id, r.body) == r.body
        assert r.envelope["id"] == r.msg_id
