"""The GCRA rate limiters, in Redis (real) and in-process, held to one contract: a burst is
admitted at once, the next request waits one interval, concurrent requests never take more
than the burst; a Redis that does not answer costs at most the timeout (issue 21). In Redis, the
hits of one turn of the event loop are counted by one script call, each as its own call would
count it (docs/performance.md item 33)."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

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
from tests.support.processes import refusing_port
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
        redis = Redis.from_url(f"redis://127.0.0.1:{refusing_port()}/0")  # nothing listens
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


class CountedCalls:
    """Wraps a RedisRateLimiter's script: how many calls, how many buckets each."""

    def __init__(self, limiter: RedisRateLimiter) -> None:
        self.sizes: list[int] = []
        self._script = limiter._script
        limiter._script = self  # type: ignore[assignment]

    async def __call__(self, *, keys: list[str], args: list[int]) -> Any:
        self.sizes.append(len(keys))
        return await self._script(keys=keys, args=args)


class TestBatches:
    async def test_the_hits_of_one_turn_are_one_call_each_counted_as_alone(self) -> None:
        redis = Redis.from_url(REDIS_URL)
        await redis.flushdb()
        limiter = RedisRateLimiter(redis)
        calls = CountedCalls(limiter)
        rate, other = Rate(per_s=0.01, burst=3), Rate(per_s=0.5, burst=2)
        verdicts = await asyncio.gather(
            *(limiter.hit("a:write", rate) for _ in range(5)),
            *(limiter.hit("b:read", other) for _ in range(3)),
        )
        assert calls.sizes == [8]
        assert [(v.allowed, v.remaining) for v in verdicts] == [
            (True, 2), (True, 1), (True, 0), (False, 0), (False, 0),  # a: burst 3
            (True, 1), (True, 0), (False, 0),  # b: burst 2, its own bucket
        ]  # fmt: skip
        assert 99 < verdicts[3].retry_after_s <= 100  # one interval of 100 s
        assert 1.5 < verdicts[7].retry_after_s <= 2.0
        # A lone hit, later, is a call of its own and sees what the batch left.
        assert not (await limiter.hit("a:write", rate)).allowed
        assert calls.sizes == [8, 1]
        await redis.aclose()

    async def test_two_processes_batching_at_once_share_one_budget(self) -> None:
        redis_a, redis_b = Redis.from_url(REDIS_URL), Redis.from_url(REDIS_URL)
        await redis_a.flushdb()
        a, b = RedisRateLimiter(redis_a), RedisRateLimiter(redis_b)
        calls_a, calls_b = CountedCalls(a), CountedCalls(b)
        rate = Rate(per_s=0.01, burst=25)
        verdicts = []
        for _ in range(4):  # four turns, each a batch of 20 in each "process"
            verdicts += await asyncio.gather(
                *(limiter.hit("k:write", rate) for _ in range(20) for limiter in (a, b))
            )
        assert calls_a.sizes == calls_b.sizes == [20, 20, 20, 20]
        assert sum(v.allowed for v in verdicts) == 25
        await redis_a.aclose()
        await redis_b.aclose()

    async def test_a_caller_that_gave_up_before_the_call_is_not_counted(self) -> None:
        redis = Redis.from_url(REDIS_URL)
        await redis.flushdb()
        limiter = RedisRateLimiter(redis)
        calls = CountedCalls(limiter)
        rate = Rate(per_s=0.01, burst=2)
        gone = asyncio.ensure_future(limiter.hit("k:write", rate))
        kept = [asyncio.ensure_future(limiter.hit("k:write", rate)) for _ in range(2)]
        await eventually(
            lambda: _gathered(limiter, 3), interval_s=0, what="3 hits gathered, no call sent"
        )
        gone.cancel()
        verdicts = await asyncio.gather(*kept)
        assert calls.sizes == [2]
        assert [v.allowed for v in verdicts] == [True, True]  # the burst, not taken by `gone`
        await redis.aclose()

    async def test_a_silent_redis_answers_every_caller_with_none_and_the_call_ends(self) -> None:
        async with tcp_server(silent) as server:
            redis = Redis.from_url(f"redis://127.0.0.1:{server.port}/0")
            limiter = RedisRateLimiter(redis)
            verdicts = await asyncio.gather(
                *(hit_within(limiter, f"k{i}:read", Rate(1, 1), timeout_s=0.2) for i in range(5))
            )
            assert verdicts == [None] * 5
            # Every caller gave up: the call is cancelled, not left waiting on the socket.
            await eventually(lambda: _idle(limiter), timeout_s=2, interval_s=0.01)
            await redis.aclose()

    async def test_an_error_reaches_every_caller_of_the_batch(self) -> None:
        redis = Redis.from_url(f"redis://127.0.0.1:{refusing_port()}/0")  # nothing listens
        limiter = RedisRateLimiter(redis)
        verdicts = await asyncio.gather(
            *(hit_within(limiter, f"k{i}:read", Rate(1, 1), timeout_s=2) for i in range(3))
        )
        assert verdicts == [None] * 3
        await redis.aclose()


async def _idle(limiter: RedisRateLimiter) -> bool:
    return not limiter._calls


async def _gathered(limiter: RedisRateLimiter, count: int) -> bool:
    """Whether `count` hits wait for a call that has not started (it takes them when it does)."""
    return len(limiter._gathering or []) == count
