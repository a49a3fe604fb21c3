"""Routes of the event feed: a page of events, and the live Server-Sent Events stream."""

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import BaseModel
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from chainflow.api import problems
from chainflow.api.auth import KeyWatch
from chainflow.api.deps import ReadKey, SessionmakerDep
from chainflow.api.event_hub import EventHub, Subscription, frame, read_events
from chainflow.api.responses import problem_responses
from chainflow.core.errors import InvalidInput
from chainflow.core.fields import ChainId
from chainflow.core.logging import get_logger
from chainflow.core.numerals import ascii_int
from chainflow.core.types import ChainId as CoreChainId
from chainflow.core.types import WalletId
from chainflow.domain.apikeys.models import ApiKey
from chainflow.domain.apikeys.restrictions import restrictions_of
from chainflow.domain.apikeys.service import InvalidApiKey
from chainflow.domain.events import envelope
from chainflow.domain.events import service as events
from chainflow.domain.wallets import service as wallets
from chainflow.infra.db.uow import unit_of_work

log = get_logger(__name__)

# A key restricted to wallets or chains reads only their events (EventFilter.reach).
router = APIRouter(prefix="/v1/events", tags=["events"])
_CATCH_UP_PAGE = 500
_KEY_CHECK_S = 1.0  # an open stream authenticates its key again this often (the key cache)

_MAX_CURSOR = 2**63 - 1  # the BIGINT of events.cursor
After = Annotated[int | None, Query(ge=0, le=_MAX_CURSOR, description="events after this cursor")]
Types = Annotated[
    str | None,
    Query(max_length=1400, description="comma list of types, `*` globs: transaction.*"),
]
Wallet = Annotated[str | None, Query(max_length=64, description="wallet id or address")]


class EventList(BaseModel):
    """A page of envelopes in cursor order; `next_cursor` is the `after` of the next page
    (null at the end: to follow new events, pass the last item's cursor)."""

    items: list[dict[str, Any]]
    next_cursor: str | None = None


@router.get("", responses=problem_responses(401, 403, 404, 422))
async def list_events(
    sessionmaker: SessionmakerDep,
    key: ReadKey,
    after: After = None,
    cursor: Annotated[str | None, Query(max_length=20, description="a next_cursor")] = None,
    types: Types = None,
    wallet: Wallet = None,
    chain_id: Annotated[ChainId | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> EventList:
    """Sequenced events in cursor order (a cursor is never filled in behind a reader)."""
    async with unit_of_work(sessionmaker) as session:
        where = await _filter(session, key, types, wallet, chain_id)
        start = _start(after, cursor)
        rows = await events.list_events(session, after=start, where=where, limit=limit + 1)
    items = [envelope(row) for row in rows[:limit]]
    more = len(rows) > limit
    return EventList(items=items, next_cursor=str(rows[limit - 1].cursor) if more else None)


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "SSE, one event a frame"},
        **problem_responses(401, 403, 404, 422, 503),
    },
)
async def stream_events(
    request: Request,
    sessionmaker: SessionmakerDep,
    key: ReadKey,
    after: After = None,
    types: Types = None,
    wallet: Wallet = None,
    chain_id: Annotated[ChainId | None, Query()] = None,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> Response:
    """Server-Sent Events: `id:` the cursor, `event:` the type, `data:` the envelope. Resumes
    after `Last-Event-ID` (or `?after=`; neither: from now), with no gap and no duplicate;
    a `: keep-alive` comment line when nothing was sent for a while. The stream ends (after a
    `: closed: <code>` comment) once its key is revoked or expired, as a new request would be
    refused."""
    hub: EventHub = request.app.state.event_hub
    async with unit_of_work(sessionmaker) as session:
        where = await _filter(session, key, types, wallet, chain_id)
    start = _start(_last_event_id(last_event_id), None) if last_event_id else after
    slot = hub.reserve()
    if slot is None:
        return _too_many_streams(request, hub)
    resources = request.app.state.resources
    watch = KeyWatch.of(resources, request.headers.get("authorization"), key, every_s=_KEY_CHECK_S)
    keepalive_s = resources.settings.event_stream_keepalive_s
    return _EventStream(
        event_frames(hub, where, start, keepalive_s=keepalive_s, watch=watch),
        release=slot.release,
    )


class _EventStream(StreamingResponse):
    """A stream that gives its slot back however it ends, even before its first byte."""

    def __init__(self, body: AsyncIterator[bytes], *, release: Callable[[], None]) -> None:
        super().__init__(
            body,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


@dataclass
class _Position:
    """The cursor of the last event a stream has passed (sent, or filtered out), and when its
    client last got a frame or a keep-alive (monotonic): the stream's, not one subscription's,
    so catching up and subscribing again does not put the keep-alive off (review)."""

    last: int
    sent: float

    def keepalive(self, keepalive_s: float) -> bytes | None:
        """A keep-alive comment if nothing was sent for `keepalive_s`, else None."""
        if time.monotonic() - self.sent < keepalive_s:
            return None
        self.sent = time.monotonic()
        return b": keep-alive\n\n"


async def event_frames(
    hub: EventHub,
    where: events.EventFilter,
    after: int | None,
    *,
    keepalive_s: float,
    watch: KeyWatch,
) -> AsyncGenerator[bytes, None]:
    """The bytes of one stream: every event after `after` (None: from its first byte on)
    that `where` takes, each once, in cursor order, until the hub closes or the reader's key
    is no longer live (`watch`: checked before each frame and while idle)."""
    sub = await hub.subscribe()
    position = _Position(sub.start if after is None else after, sent=time.monotonic())
    try:
        yield b": stream open\n\n"  # the headers go out now, and the admission slot with them
        while True:
            async for chunk in _catch_up(hub, sub, where, position, keepalive_s, watch):
                yield chunk
            async for chunk in _live(hub, sub, where, position, keepalive_s, watch):
                yield chunk
            hub.unsubscribe(sub)
            if hub.closed.is_set():
                return
            sub = await hub.subscribe()  # it fell behind: catch up again from the database
    except InvalidApiKey as error:  # revoked, expired or gone: the stream ends here
        yield b": closed: %s\n\n" % error.code.encode()
    except Exception as error:
        if not problems.database_unavailable(error):
            raise
        # The key (or a catch-up page) cannot be read: end cleanly (fail closed); the client
        # reconnects with Last-Event-ID and misses nothing.
        log.warning(
            "events.stream_closed", reason="database_unavailable", error_type=type(error).__name__
        )
        yield b": closed: database_unavailable\n\n"
    finally:
        hub.unsubscribe(sub)


async def _catch_up(
    hub: EventHub,
    sub: Subscription,
    where: events.EventFilter,
    position: _Position,
    keepalive_s: float,
    watch: KeyWatch,
) -> AsyncIterator[bytes]:
    """What the database holds after the position up to where the subscription starts; a
    keep-alive before a page when nothing was sent for a while (the filter may pass none of
    the events that keep cutting the stream from the fan-out)."""
    while position.last < sub.start:
        if (keepalive := position.keepalive(keepalive_s)) is not None:
            yield keepalive
        rows = await read_events(
            hub.sessionmaker, after=position.last, where=where, limit=_CATCH_UP_PAGE, upto=sub.start
        )
        for row in rows:
            await watch.check()
            position.last = row.cursor
            position.sent = time.monotonic()
            yield frame(row).text
        if len(rows) < _CATCH_UP_PAGE:
            position.last = sub.start


async def _live(
    hub: EventHub,
    sub: Subscription,
    where: events.EventFilter,
    position: _Position,
    keepalive_s: float,
    watch: KeyWatch,
) -> AsyncIterator[bytes]:
    """What the hub publishes, until the stream falls too far behind (or the API stops)."""
    while not hub.closed.is_set():
        await watch.check()
        if sub.overflowed and sub.queue.empty():
            return  # the caller catches up from the database and subscribes again
        try:
            item = await _get(
                hub, sub, watch.wait_s(position.sent + keepalive_s - time.monotonic())
            )
        except TimeoutError:
            item = None
        if item is not None and item.cursor > position.last:
            position.last = item.cursor
            if where.matches(item.row):
                await watch.check()  # raises before the frame: nothing goes out once it fails
                position.sent = time.monotonic()
                yield item.text
                continue
        # Idle for the client, even while events its filter leaves out keep arriving: a
        # proxy or client that cuts silent connections must see the stream is alive.
        if (keepalive := position.keepalive(keepalive_s)) is not None:
            yield keepalive


async def _get(hub: EventHub, sub: Subscription, timeout_s: float) -> Any:
    getter = asyncio.ensure_future(sub.queue.get())
    closing = asyncio.ensure_future(hub.closed.wait())
    try:
        done, _ = await asyncio.wait(
            (getter, closing), timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        closing.cancel()
        if not getter.done():
            getter.cancel()
    if not done:
        raise TimeoutError
    return getter.result() if getter in done else None


async def _filter(
    session: Any, key: ApiKey, types: str | None, wallet: str | None, chain_id: int | None
) -> events.EventFilter:
    """The reader's filter, narrowed to its key's reach; a `wallet` or `chain_id` outside it is
    403 `key_restricted` (whether that wallet exists or not), as on every route."""
    reach = restrictions_of(key)
    if chain_id is not None:
        reach.check_chain(chain_id)
    wallet_id = None
    if wallet:
        found = await wallets.get_visible_wallet(session, wallet, restrictions=reach)
        wallet_id = WalletId(found.id)
    return events.EventFilter(
        types=events.parse_types(types),
        wallet_id=wallet_id,
        chain_id=CoreChainId(chain_id) if chain_id is not None else None,
        reach=reach,
    )


class InvalidEventCursor(InvalidInput):
    code = "invalid_cursor"
    title = "Invalid cursor"


def _start(after: int | None, cursor: str | None) -> int:
    if cursor is not None:
        start = _event_cursor(cursor)
        if start is None:
            raise InvalidEventCursor("cursor is not one this API returned")
        return start
    return after or 0


def _last_event_id(value: str) -> int:
    start = _event_cursor(value)
    if start is None:
        raise InvalidEventCursor("Last-Event-ID must be an event's cursor (decimal digits)")
    return start


def _event_cursor(text: str) -> int | None:
    """A cursor as the API writes it: ASCII digits, within the BIGINT column (`isdigit()`
    takes "²", which int() refuses)."""
    value = ascii_int(text, max_digits=20)
    return value if value is not None and value <= _MAX_CURSOR else None


def _too_many_streams(request: Request, hub: EventHub) -> Response:
    response = problems.problem(
        request,
        status=503,
        code="too_many_streams",
        title="Too many streams",
        detail=f"this API process serves at most {hub.max_streams} event streams at once; "
        "retry shortly (another API process may have room)",
    )
    response.headers["Retry-After"] = "5"
    return response
