"""Infrastructure faults under load: Redis killed (its queue lost) and back empty; PostgreSQL
restarted. Workers and the API recover without a manual step and nothing is lost."""

from pathlib import Path

import aiohttp
import pytest

from chainflow.domain.transactions.state import TxStatus
from tests.chaos.cluster import SINK, open_cluster
from tests.chaos.servers import private_postgres, private_redis
from tests.support.databases import REDIS_URL
from tests.support.polling import eventually

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
async def test_redis_killed_and_back_empty(database_url: str, anvil: str, tmp_path: Path) -> None:
    async with (
        private_redis() as redis,
        open_cluster(tmp_path, database_url, anvil, redis_url=redis.url, workers=2) as cluster,
    ):
        await cluster.submit(10)
        redis.stop()  # every queued doorbell is gone with it
        await cluster.submit(10)  # accepted while Redis is down: the rows are the truth
        redis.start()
        await redis.ready()
        await cluster.submit(10)
        await cluster.settle(timeout_s=120)
        assert await cluster.count(TxStatus.CONFIRMED) == 90
        assert await cluster.violations() == []


async def test_postgres_restarted(anvil: str, tmp_path: Path) -> None:
    async with (
        private_postgres() as postgres,
        open_cluster(tmp_path, postgres.url, anvil, redis_url=REDIS_URL, workers=2) as cluster,
    ):
        await cluster.submit(10)
        postgres.stop()  # every connection of every process is cut, work in flight

        async def workers_noticed() -> bool:
            # A worker whose start-up was still under way (a loaded machine) notices it there:
            # it waits for the database before its first round.
            logs = [cluster.log_of(proc) for proc in cluster.alive("worker")]
            noticed = ("engine.round_failed", "worker.start_failed")
            return all(any(sign in log for sign in noticed) for log in logs)

        await eventually(workers_noticed, timeout_s=30, what="every worker noticed the outage")
        # Meanwhile the API refuses with a retryable problem, not a 500.
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{cluster.api_url}/v1/transactions",
                json={"chain_id": 31337, "wallet": cluster.wallets[0].address, "to": SINK},
                headers={"Authorization": f"Bearer {cluster.token}"},
            ) as refused,
        ):
            assert refused.status == 503, await refused.text()
            assert refused.headers["Content-Type"] == "application/problem+json"
            assert refused.headers["Retry-After"] == "1"
            assert (await refused.json())["code"] == "database_unavailable"
        postgres.start()
        await cluster.submit(10)
        await cluster.settle(timeout_s=120)
        assert await cluster.count(TxStatus.CONFIRMED) == 60
        assert await cluster.violations() == []


async def test_api_recovers_at_once_after_postgres_restarted_while_idle(
    anvil: str, tmp_path: Path
) -> None:
    # The API checks out pooled connections without a ping (a round trip per request): after
    # a restart, the first request to meet a dead connection is refused as retryable and
    # SQLAlchemy recycles the whole pool, so the next ones succeed.
    async with (
        private_postgres() as postgres,
        open_cluster(tmp_path, postgres.url, anvil, redis_url=REDIS_URL, workers=0) as cluster,
    ):
        await cluster.submit(8)  # the API's pool holds open connections now
        postgres.stop()
        postgres.start()
        statuses: list[int] = []
        async with aiohttp.ClientSession() as http:
            for i in range(20):  # one at a time: each takes the pool's next connection
                async with http.post(
                    f"{cluster.api_url}/v1/transactions",
                    json={
                        "chain_id": 31337,
                        "wallet": cluster.wallets[0].address,
                        "to": SINK,
                        "value": str(i + 1),
                    },
                    headers={"Authorization": f"Bearer {cluster.token}"},
                ) as answer:
                    statuses.append(answer.status)
                    if answer.status != 202:
                        assert answer.status == 503, await answer.text()
                        assert (await answer.json())["code"] == "database_unavailable"
        assert statuses[0] in (202, 503)
        assert statuses[1:] == [202] * 19
