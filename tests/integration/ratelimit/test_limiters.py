"""The GCRA rate limiters, in Redis (real) and in-process, held to one contract: a burst is
admitted at once, the next request waits one interval, concurrent requests never take more
than the burst; a Redis that does not answer costs at most the timeout (issue 21)."""

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from chainflow.api.ratelimit import RateLimiterUnavailable, decide
from chainflow.core.settings import Settings
from chainflow.infra.ratelimit import (
    LocalRateLimiter,
    Rate,
    RateLimiter,
    RedisRateLimiter,
    hit_within,
)
from tests.support.databases import REDIS_URL
from tests.support.polling import eventually
from tests.support.tcp_servers import TcpServer, tcp_server


@pytest.fixture(params=["redis", "local"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    if request.param == "local":
        yield LocalRateLimiter()
        return
    redis = Redis.from_url(REDIS_URL)
    await redis.flushdb()
    yield RedisRateLimiter(redis)
    await redis.aclose()


class TestGcra:
    async def test_a_burst_passes_then_one_interval_is_waited(self, limiter: RateLimiter) -> None:
        rate = Rate(per_s=0.5, burst=3)  # one request per 2 s, three at once
        verdicts = [await limiter.hit("k:read", rate) for _ in range(4)]
        assert [v.allowed for v in verdicts] == [True, True, True, False]
        assert [v.remaining for v in verdicts[:3]] == [2, 1, 0]
        assert 1.5 < verdicts[3].retry_after_s <= 2.0
        assert 4.5 < verdicts[3].reset_s <= 6.0  # three intervals until full again

    async def test_buckets_are_separate(self, limiter: RateLimiter) -> None:
        rate = Rate(per_s=0.5, burst=1)
        assert (await limiter.hit("a:read", rate)).allowed
        assert not (await limiter.hit("a:read", rate)).allowed
        assert (await limiter.hit("a:write", rate)).allowed
        assert (await limiter.hit("b:read", rate)).allowed

    async def test_concurrent_hits_never_take_more_than_the_burst(
        self, limiter: RateLimiter
    ) -> None:
        rate = Rate(per_s=0.01, burst=10)
        verdicts = await asyncio.gather(*(limiter.hit("k:write", rate) for _ in range(60)))
        assert sum(v.allowed for v in verdicts) == 10

    async def test_the_rate_refills(self, limiter: RateLimiter) -> None:
        rate = Rate(per_s=50, burst=1)
        assert (await limiter.hit("k:read", rate)).allowed
        refused = await limiter.hit("k:read", rate)
        assert not refused.allowed
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def allowed() -> bool:
            return (await limiter.hit("k:read", rate)).allowed  # a refusal changes nothing

        await eventually(allowed, timeout_s=5, interval_s=0.002)
        assert loop.time() - started >= refused.retry_after_s - 0.005


async def silent(_state: TcpServer, reader: asyncio.StreamReader, _w: object) -> None:
    while await reader.read(4096):
        pass  # reads and never answers


class TestSilentRedis:
    async def test_a_redis_that_never_answers_costs_the_timeout_only(self) -> None:
        async with tcp_server(silent) as server:
            redis = Redis.from_url(f"redis://127.0.0.1:{server.port}/0")
            loop = asyncio.get_running_loop()
            started = loop.time()
            verdict = await hit_within(RedisRateLimiter(redis), "k:read", Rate(1, 1), timeout_s=0.2)
            assert verdict is None
            assert loop.time() - started < 1.0
            await redis.aclose()

    async def test_a_refused_connection_is_none_at_once(self) -> None:
        async with tcp_server(lambda *_: asyncio.sleep(0)) as server:
            port = server.port
        redis = Redis.from_url(f"redis://127.0.0.1:{port}/0")  # closed: nothing listens
        assert await hit_within(RedisRateLimiter(redis), "k", Rate(1, 1), timeout_s=2) is None
        await redis.aclose()


class TestFallback:
    @pytest.mark.parametrize("fail_open", [True, False])
    async def test_a_silent_redis_falls_back_to_the_process_bucket_or_503(
        self, fail_open: bool
    ) -> None:
        settings = Settings(rate_limit_redis_timeout_s=0.1, rate_limit_fail_open=fail_open)
        async with tcp_server(silent) as server:
            redis = Redis.from_url(f"redis://127.0.0.1:{server.port}/0")
            shared, own = RedisRateLimiter(redis), LocalRateLimiter()
            rate = Rate(per_s=0.1, burst=2)
            if not fail_open:
                with pytest.raises(RateLimiterUnavailable):
                    await decide(shared, own, "k:read", rate, settings)
            else:
                verdicts = [await decide(shared, own, "k:read", rate, settings) for _ in range(3)]
                assert [v.allowed for v in verdicts] == [True, True, False]
            await redis.aclose()
