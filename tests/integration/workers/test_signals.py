"""Chain signals between worker processes, on the real Redis (fails if it is unreachable)."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import structlog

from chainflow.infra.queue.signals import RedisSignals
from tests.support.databases import REDIS_URL
from tests.support.polling import eventually


@asynccontextmanager
async def listening(signals: RedisSignals, heard: list[int]) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(signals.listen(heard.append, stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)


@asynccontextmanager
async def two_processes(
    first: str, second: str
) -> AsyncIterator[tuple[RedisSignals, RedisSignals]]:
    # Their own prefix: other runs on this Redis never reach them.
    prefix = f"t{uuid.uuid4().hex[:10]}"
    a = RedisSignals(REDIS_URL, sender=first, prefix=prefix)
    b = RedisSignals(REDIS_URL, sender=second, prefix=prefix)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def until_subscribed(sender: RedisSignals, heard: list[int]) -> None:
    # A subscription starts asynchronously: publish a probe chain until it is heard.
    async def probe() -> bool:
        sender.publish_soon(1)
        return 1 in heard

    await eventually(probe, timeout_s=10, interval_s=0.05)
    heard.clear()


class TestRedisSignals:
    async def test_another_process_hears_the_chain(self) -> None:
        heard: list[int] = []
        async with two_processes("a", "b") as (a, b), listening(b, heard):
            await until_subscribed(a, heard)
            a.publish_soon(31337)

            async def got() -> bool:
                return 31337 in heard

            await eventually(got, timeout_s=5)

    async def test_a_process_does_not_hear_itself(self) -> None:
        heard: list[int] = []
        async with two_processes("me", "other") as (me, other), listening(me, heard):
            await until_subscribed(other, heard)
            me.publish_soon(5)
            other.publish_soon(6)  # published after ours: once it is heard, ours was too

            async def got() -> bool:
                return 6 in heard

            await eventually(got, timeout_s=5)
            assert 5 not in heard

    @pytest.mark.parametrize("kind", ["come", "sent"])
    async def test_a_call_to_come_or_a_drain_s_sends_reach_their_own_handler(
        self, kind: str
    ) -> None:
        heard: list[int] = []
        handled: list[int] = []
        async with two_processes("a", "b") as (a, b):
            stop = asyncio.Event()
            handler = {f"on_{kind}": handled.append}
            task = asyncio.create_task(b.listen(heard.append, stop, **handler))
            try:
                await until_subscribed(a, heard)
                a.publish_soon(7, **{kind: True})
                a.publish_soon(8)  # published after the call: once it is heard, the call was too

                async def got() -> bool:
                    return 8 in heard

                await eventually(got, timeout_s=5)
                assert handled == [7]
                assert 7 not in heard
            finally:
                stop.set()
                await asyncio.wait_for(task, timeout=5)

    async def test_sends_without_their_own_handler_are_a_plain_signal(self) -> None:
        # As a worker of an earlier version, which reads a sender it does not know, hears them.
        heard: list[int] = []
        async with two_processes("a", "b") as (a, b), listening(b, heard):
            await until_subscribed(a, heard)
            a.publish_soon(11, sent=True)

            async def got() -> bool:
                return 11 in heard

            await eventually(got, timeout_s=5)

    async def test_an_unreachable_redis_fails_neither_side(self) -> None:
        # Port 1 refuses connections: the listener keeps retrying until stopped, and
        # publishing is dropped without an error reaching the caller; both say so in the log.
        signals = RedisSignals("redis://127.0.0.1:1/0", sender="x", prefix="unreachable")
        heard: list[int] = []
        try:
            with structlog.testing.capture_logs() as logs:
                async with listening(signals, heard):
                    signals.publish_soon(1)
                    signals.publish_soon(1)  # covered by the one on its way

                    async def both_failed() -> bool:
                        events = {entry["event"] for entry in logs}
                        return {"signals.listen_failed", "signals.publish_failed"} <= events

                    await eventually(both_failed, timeout_s=10)
            assert heard == []
            assert sum(entry["event"] == "signals.publish_failed" for entry in logs) == 1
        finally:
            await signals.close()
