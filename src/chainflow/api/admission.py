"""Admission control: at most `limit` requests worked on at once per API process; the next one
is refused at once with a 503 problem and Retry-After, instead of waiting on the database pool
(latency without bound, memory growing with the backlog, then a timeout)."""

from urllib.parse import parse_qsl

import orjson
from pydantic import TypeAdapter, ValidationError
from starlette.types import Scope, Send

from chainflow.core.redaction import scrub_text
from chainflow.infra.metrics import API_OVERLOADED

EXEMPT_PATHS = ("/healthz", "/readyz", "/metrics")
# Long-lived responses: admitted like any request, their slot is freed once their headers
# are sent (gate.py); the event hub bounds how many run at once (issue 16).
STREAM_PATHS = ("/v1/events/stream",)


# Slots are counted by cost, not by request (issue 14): 128 admitted lists of 500 rows cost
# ~10 s of CPU on one event loop, and a refusal can only be sent once the loop gets to it (a
# probe saw 10.6 s). A list costs a slot per LIST_ROWS_PER_SLOT rows asked for (limit=500: 25,
# ~36 ms of rendering measured), a body a slot per BODY_BYTES_PER_SLOT bytes; whatever the
# cost, a request alone may always enter, so the largest one stays possible on an idle process.
LIST_ROWS_PER_SLOT = 20
BODY_BYTES_PER_SLOT = 32 * 1024
# Every list (each takes `limit`, 1-500, default 100): these paths, and a resource's
# deliveries and runs.
_LIST_PATHS = frozenset(
    (
        "/v1/transactions",
        "/v1/wallets",
        "/v1/events",
        "/v1/lanes",
        "/v1/audit",
        "/v1/schedules",
        "/v1/webhooks",
    )
)
_LIST_SUFFIXES = ("/deliveries", "/runs")
MAX_LIST_ROWS = 500
_LAX_INT = TypeAdapter(int)  # a route's `limit: int` query parameter


def cost_of(scope: Scope, body_bytes: int = 0) -> int:
    """How many slots a request takes: 1, more for a long list page or a large body."""
    slots = 1 + body_bytes // BODY_BYTES_PER_SLOT
    path = scope["path"]
    if scope["method"] == "GET" and (path in _LIST_PATHS or path.endswith(_LIST_SUFFIXES)):
        rows = _rows_asked(scope.get("query_string", b""))
        slots = max(slots, -(-rows // LIST_ROWS_PER_SLOT))
    return slots


def _rows_asked(query: bytes) -> int:
    """The `limit` the route will read, as it reads it: percent-decoded, the last one given
    (a raw `limit=500` alone was looked for, so `limit=%35%30%30` or `limit=1&limit=500` cost
    one slot and listed 500 rows), by pydantic's lax int (`+500`, ` 500`, `500.0`, `5_00` are
    500: they cost the default page), at most the 500 a route allows. The lists' default
    page, 100, if absent or not a number (the route refuses that)."""
    if b"limit" not in query and b"%" not in query:
        return 100
    limits = [value for name, value in parse_qsl(query.decode("latin-1"), True) if name == "limit"]
    if not limits:
        return 100
    try:
        return min(_LAX_INT.validate_python(limits[-1]), MAX_LIST_ROWS)
    except ValidationError:
        return 100


class Admission:
    """The slots of one process. Single event loop: plain counting, no lock, no await."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0

    def enter(self, slots: int = 1) -> int:
        """Take `slots` (at most all of them) if free; the number taken, 0 if refused."""
        slots = min(slots, self.limit)
        if self.in_flight + slots > self.limit:
            return 0
        self.in_flight += slots
        return slots

    def leave(self, slots: int = 1) -> None:
        self.in_flight -= slots


async def refuse(scope: Scope, send: Send, *, close: bool = False) -> None:
    """Answer 503 `overloaded` (`close`: the body was left unread, so drop the connection)."""
    API_OVERLOADED.inc()
    body = orjson.dumps(
        {
            "type": "https://chainflow.dev/problems/overloaded",
            "title": "Overloaded",
            "status": 503,
            "detail": "too many requests in flight on this API process; retry shortly",
            "code": "overloaded",
            "instance": scrub_text(scope["path"]),  # a path may hold a pasted key
        }
    )
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", b"1"),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})
