"""The roster of live workers per chain (infra/queue/roster.py), on the real Redis: workers
beating for a chain see each other, one that stops leaves at once, one serving other chains
is not counted, and a roster that cannot reach Redis names its own worker alone."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as redis
import structlog

from chainflow.infra.queue.roster import RedisRoster
from tests.support.databases import REDIS_URL
from tests.support.polling import eventually


@asynccontextmanager
async def beating(roster: RedisRoster, chain_ids: list[int]) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(roster.beat(lambda: chain_ids, stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)


@asynccontextmanager
async def rereading(owners: list[tuple[str, float]]) -> AsyncIterator[list[RedisRoster]]:
    """Rosters (owner, reread_s) of one fresh prefix whose beats are a minute apart and whose
    re-reads wait for a slow host; their rosters deleted and clients closed after."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    rosters = [
        RedisRoster(
            REDIS_URL, owner=o, prefix=prefix, every_s=60, reread_s=every, reread_timeout_s=30
        )
        for o, every in owners
    ]
    try:
        yield rosters
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        await client.delete(f"{prefix}:workers:1", f"{prefix}:workers:7")
        await client.aclose()
        for roster in rosters:
            await roster.close()


class TestRedisRoster:
    async def test_workers_of_a_chain_see_each_other_and_one_that_stops_leaves(self) -> None:
        prefix = f"t{uuid.uuid4().hex[:10]}"  # other runs on this Redis never reach them
        a, b, c = (RedisRoster(REDIS_URL, owner=o, prefix=prefix, every_s=0.1) for o in "abc")
        try:
            async with beating(a, [1, 2]), beating(c, [2]):
                async with beating(b, [1]):

                    async def both() -> bool:
                        return a.workers(1) == ("a", "b") and b.workers(1) == ("a", "b")

                    await eventually(both, timeout_s=10)
                    assert a.workers(2) == ("a", "c")  # c serves chain 2 only

                async def gone() -> bool:
                    return a.workers(1) == ("a",)

                await eventually(gone, timeout_s=2)  # left when it stopped, not after 3 s
        finally:
            for roster in (a, b, c):
                await roster.close()

    async def test_members_are_scored_with_the_redis_clock_and_one_far_ahead_is_dropped(
        self,
    ) -> None:
        # A dead worker whose host clock ran 60 s ahead scored itself in the future: pruning
        # by each host's clock kept it live for a minute. The server's clock drops it at once,
        # as it drops one last heard long ago.
        prefix = f"t{uuid.uuid4().hex[:10]}"
        key = f"{prefix}:workers:1"
        client = redis.Redis.from_url(REDIS_URL)
        a, b = (RedisRoster(REDIS_URL, owner=o, prefix=prefix, every_s=0.05) for o in "ab")
        try:
            seconds, micros = await client.time()
            server_now = seconds + micros / 1e6
            await client.zadd(key, {"ahead": server_now + 60, "stale": server_now - 60})
            async with beating(a, [1]), beating(b, [1]):

                async def only_the_live_two() -> bool:
                    return a.workers(1) == ("a", "b") and b.workers(1) == ("a", "b")

                await eventually(only_the_live_two, timeout_s=10)
                assert sorted(await client.zrange(key, 0, -1)) == [b"a", b"b"]
                score = await client.zscore(key, "a")
                assert score is not None
                assert abs(score - server_now) < 5  # scored with the server's TIME
        finally:
            await client.delete(key)
            await client.aclose()
            for roster in (a, b):
                await roster.close()

    async def test_a_reread_sees_a_worker_that_joined_since_the_last_beat(self) -> None:
        # Beats a minute apart: without the re-read the first would list itself alone for a
        # minute (a second with the default beat: item 54's idle worker at start).
        async with rereading([("a", 60), ("b", 60), ("a", 0)]) as (a, b, again):
            assert await a.reread(1) == ("a",)  # its check-in: nobody else yet
            assert await b.reread(1) == ("a", "b")
            assert await a.reread(1) == ("a",)  # read within reread_s: not read again
            assert a.workers(1) == ("a",)
            assert await again.reread(1) == ("a", "b")
            assert again.workers(1) == ("a", "b")

    async def test_a_worker_that_left_is_not_checked_in_again_by_a_reread(self) -> None:
        # b re-read chain 7 (its beats serve chain 1 only), then stopped: it leaves chain 7 too,
        # and a round still under way that re-reads does not check it in again.
        async with rereading([("a", 0), ("b", 0)]) as (a, b):
            async with beating(b, [1]):
                assert await b.reread(7) == ("b",)
                assert await a.reread(7) == ("a", "b")
            assert await b.reread(7) == ("b",)  # its last read: no beat, so not back in
            assert await a.reread(7) == ("a",)
            assert await a.reread(1) == ("a",)

    async def test_an_unreachable_redis_leaves_the_worker_alone(self) -> None:
        # Port 1 refuses connections: the beat fails, says so once, and the worker is alone.
        roster = RedisRoster(
            "redis://127.0.0.1:1/0", owner="me", prefix="unreachable", every_s=0.05
        )
        try:
            with structlog.testing.capture_logs() as logs:
                async with beating(roster, [1]):

                    async def failed() -> bool:
                        return len(logs) >= 1

                    await eventually(failed, timeout_s=10)
                    assert roster.workers(1) == ("me",)
            assert [entry["event"] for entry in logs] == ["roster.beat_failed"]
        finally:
            await roster.close()
