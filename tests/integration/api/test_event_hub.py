"""The API's event hub and a stream's frames, on both databases: a stream that falls behind
the fan-out catches up from the database without a gap or a duplicate; a stream "from now"
starts at the newest event even after the hub sat idle; a stream its filter keeps silent
gets keep-alives while other events flow."""

import asyncio
import re
from collections.abc import AsyncIterator

from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.api.auth import KeyWatch
from chainflow.api.event_hub import EventHub
from chainflow.api.routes.events import event_frames
from chainflow.domain.events import append_many, new_event
from chainflow.domain.events.service import EventFilter
from chainflow.infra.db.uow import unit_of_work
from chainflow.workers.outbox import sequence_all

_ID = re.compile(rb"^id: (\d+)$", re.MULTILINE)


async def _live_key() -> None:
    return None


ANY_KEY = KeyWatch(_live_key, None, every_s=1)  # a key that stays live


async def _database_down() -> None:
    raise OperationalError("SELECT …", {}, ConnectionRefusedError())


async def publish(sessionmaker: async_sessionmaker[AsyncSession], count: int) -> None:
    async with unit_of_work(sessionmaker) as session:
        await append_many(session, [new_event("t", data={"n": n}) for n in range(count)])
    await sequence_all(sessionmaker)


async def ids(frames: AsyncIterator[bytes], count: int) -> list[int]:
    """The ids of the next `count` events (comments skipped)."""
    seen: list[int] = []
    while len(seen) < count:
        chunk = await anext(frames)
        seen += [int(found) for found in _ID.findall(chunk)]
    return seen


class TestEventFrames:
    async def test_a_stream_behind_the_fan_out_catches_up_once_in_order(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        hub = EventHub(sessionmaker, poll_s=0.05, max_streams=4, queue_size=3)
        frames = event_frames(hub, EventFilter(), 0, keepalive_s=30, watch=ANY_KEY)
        try:
            assert (await anext(frames)).startswith(b":")
            await publish(sessionmaker, 4)
            assert await ids(frames, 4) == [1, 2, 3, 4]
            await publish(sessionmaker, 20)  # more than its queue holds: cut from the fan-out
            assert await ids(frames, 20) == list(range(5, 25))
            await publish(sessionmaker, 2)
            assert await ids(frames, 2) == [25, 26]
        finally:
            await frames.aclose()
            await hub.close()

    async def test_from_now_after_an_idle_spell_starts_at_the_newest_event(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        hub = EventHub(sessionmaker, poll_s=0.05, max_streams=4)
        first = event_frames(hub, EventFilter(), None, keepalive_s=30, watch=ANY_KEY)
        try:
            await anext(first)
            await publish(sessionmaker, 1)
            assert await ids(first, 1) == [1]
        finally:
            await first.aclose()
        await publish(sessionmaker, 3)  # nobody listens
        later = event_frames(hub, EventFilter(types=("t",)), None, keepalive_s=30, watch=ANY_KEY)
        try:
            await anext(later)
            await publish(sessionmaker, 1)
            assert await ids(later, 1) == [5]
        finally:
            await later.aclose()
            await hub.close()

    async def test_a_key_that_cannot_be_checked_ends_the_stream_cleanly(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """The database is down when the key is due a check: the stream ends with a comment
        (the client resumes with Last-Event-ID), not with an error that cuts the response."""
        hub = EventHub(sessionmaker, poll_s=0.05, max_streams=4)
        unchecked = KeyWatch(_database_down, None, every_s=0)
        frames = event_frames(hub, EventFilter(), 0, keepalive_s=30, watch=unchecked)
        try:
            assert await anext(frames) == b": stream open\n\n"
            assert [chunk async for chunk in frames] == [b": closed: database_unavailable\n\n"]
        finally:
            await frames.aclose()
            await hub.close()

    async def test_a_stream_whose_filter_passes_nothing_gets_keep_alives_amid_traffic(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """Events the filter leaves out keep arriving: nothing is sent, so the stream is idle
        to its client and gets its keep-alive (the audit's reproduction: none in 29 s of
        traffic, `CHAINFLOW_EVENT_STREAM_KEEPALIVE_S` 15; proxies cut silent streams)."""
        hub = EventHub(sessionmaker, poll_s=0.02, max_streams=4)
        await _keep_alive_amid_traffic(sessionmaker, hub, per_publish=1)

    async def test_a_filtered_stream_that_keeps_overflowing_still_gets_keep_alives(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """Traffic its queue cannot hold: the stream catches up from the database and
        subscribes again, over and over; the time of its last keep-alive belongs to the
        stream, not to one subscription (review: it reset on each re-subscribe, and no
        keep-alive went out in 5 s)."""
        hub = EventHub(sessionmaker, poll_s=0.02, max_streams=4, queue_size=3)
        await _keep_alive_amid_traffic(sessionmaker, hub, per_publish=10)


async def _keep_alive_amid_traffic(
    sessionmaker: async_sessionmaker[AsyncSession], hub: EventHub, *, per_publish: int
) -> None:
    """A stream filtered to `wallet.low_balance`, keep-alive 0.5 s, while other events are
    published `per_publish` at a time without pause: its next frame after the opening one,
    within 5 s, is a keep-alive."""
    quiet = EventFilter(types=("wallet.low_balance",))
    frames = event_frames(hub, quiet, None, keepalive_s=0.5, watch=ANY_KEY)
    stop = asyncio.Event()

    async def traffic() -> None:
        while not stop.is_set():
            await publish(sessionmaker, per_publish)

    assert await anext(frames) == b": stream open\n\n"
    task = asyncio.create_task(traffic())
    try:
        async with asyncio.timeout(5):
            assert await anext(frames) == b": keep-alive\n\n"
    finally:
        stop.set()
        await task
        await frames.aclose()
        await hub.close()
