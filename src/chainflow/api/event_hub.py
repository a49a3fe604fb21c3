"""One poller of the outbox per API process, fanning new events out to its SSE streams.

A stream subscribes, then catches up from the database up to the cursor the hub stood at
when it subscribed, then takes what the hub publishes after that: every cursor once, in
order (cursors are gap-free and commit-ordered, domain/events/sequencer.py). One query loop
per process, not per client: N streams cost one SELECT per poll. A stream that falls more
than `queue_size` events behind is cut from the fan-out and catches up from the database.
"""

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio
import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.core.logging import get_logger
from chainflow.domain.events import envelope
from chainflow.domain.events import service as events
from chainflow.domain.events.service import EventRecord
from chainflow.domain.events.wakeups import sequenced
from chainflow.infra.db.uow import read_only

log = get_logger(__name__)
_PAGE = 1000


@dataclass(frozen=True)
class Frame:
    """One event as a stream sends it."""

    cursor: int
    row: EventRecord
    text: bytes


def frame(row: EventRecord) -> Frame:
    """`id:` the cursor, `event:` the type, `data:` the envelope (one line of JSON)."""
    data = orjson.dumps(envelope(row))
    text = b"id: %d\nevent: %s\ndata: %s\n\n" % (row.cursor, row.type.encode(), data)
    return Frame(row.cursor, row, text)


@dataclass(eq=False)
class Subscription:
    """A stream's place in the fan-out: it gets every event with a cursor above `start`."""

    start: int
    queue: asyncio.Queue[Frame]
    overflowed: bool = False


class StreamSlot:
    """One stream's place among the hub's `max_streams`; releasing twice releases once."""

    def __init__(self, hub: "EventHub") -> None:
        self._hub: EventHub | None = hub

    def release(self) -> None:
        if self._hub is not None:
            self._hub._release()
            self._hub = None


@dataclass(eq=False)
class EventHub:
    sessionmaker: async_sessionmaker[AsyncSession]
    poll_s: float
    max_streams: int
    queue_size: int = 2000
    position: int | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    _subs: set[Subscription] = field(default_factory=set)
    _reserved: int = 0
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _start_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def reserve(self) -> "StreamSlot | None":
        """Take a stream slot if one is free."""
        if self._reserved >= self.max_streams or self.closed.is_set():
            return None
        self._reserved += 1
        return StreamSlot(self)

    def _release(self) -> None:
        self._reserved -= 1

    @property
    def streams(self) -> int:
        return self._reserved

    async def subscribe(self) -> Subscription:
        """Join the fan-out; the hub starts polling with its first subscriber."""
        async with self._start_lock:
            while self.position is None:
                self.position = await newest_cursor(self.sessionmaker)
            if self._task is None:
                self._task = asyncio.create_task(self._run())
        sub = Subscription(self.position, asyncio.Queue(self.queue_size))
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)
        if not self._subs:
            # Unread while nobody listens: the next stream "from now" must start from the
            # newest cursor then, not from here.
            self.position = None

    async def close(self) -> None:
        """End every stream and the poller (the API is shutting down)."""
        self.closed.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        unsubscribe = sequenced.subscribe(self._wake.set)  # `chainflow dev`: same process
        try:
            while not self.closed.is_set():
                self._wake.clear()
                try:
                    full = await self._poll()
                except Exception as exc:  # the database is back at the next poll, or not
                    log.warning("events.stream_poll_failed", error=repr(exc)[:300])
                    full = False
                if not full:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=self.poll_s)
        finally:
            unsubscribe()

    async def _poll(self) -> bool:
        if not self._subs:
            return False
        start = self.position
        assert start is not None  # noqa: S101 - set before the task starts
        rows = await read_events(
            self.sessionmaker, after=start, where=events.EventFilter(), limit=_PAGE
        )
        if self.position != start:  # every stream left and a new one reset it: read again
            return True
        # No await from here on: a subscriber joining now gets everything above `position`.
        for row in rows:
            self._publish(frame(row))
            self.position = row.cursor
        return len(rows) == _PAGE

    def _publish(self, item: Frame) -> None:
        for sub in list(self._subs):
            try:
                sub.queue.put_nowait(item)
            except asyncio.QueueFull:
                sub.overflowed = True  # it catches up from the database and joins again
                self._subs.discard(sub)


# A stream's reads run in the request's task, which Starlette cancels when the client goes,
# and its cancel scope cancels again at every await. A query cut short that way on SQLite left
# its connection open in aiosqlite's thread (SQLAlchemy's graceful close was cancelled too, and
# its force close stops the thread without closing the connection), with its transaction and
# the database's lock: `chainflow dev` answered nothing after a browser left a page mid-read.
# So these reads are shielded (each is one short SELECT) and read-only (on SQLite a DEFERRED
# snapshot that never takes the writer's lock). infra/db/engine.py now also closes any SQLite
# connection a cancel cuts short whole; the shield still keeps a stream's read from being cut.


async def newest_cursor(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """The largest cursor given so far; a disconnect cannot cut it short."""
    with anyio.CancelScope(shield=True):
        async with read_only(sessionmaker) as session:
            newest = await events.newest_cursor(session)
    return newest


async def read_events(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    after: int,
    where: events.EventFilter,
    limit: int,
    upto: int | None = None,
) -> Sequence[EventRecord]:
    """events.list_events in a read-only session a disconnect cannot cut short."""
    with anyio.CancelScope(shield=True):
        async with read_only(sessionmaker) as session:
            rows = await events.list_events(
                session, after=after, where=where, limit=limit, upto=upto
            )
    return rows
