"""Admission control: at most `limit` requests worked on at once per API process; the next one
is refused at once with a 503 problem and Retry-After, instead of waiting on the database pool
(latency without bound, memory growing with the backlog, then a timeout)."""

import orjson
from starlette.types import Scope, Send

from chainflow.core.redaction import scrub_text
from chainflow.infra.metrics import API_OVERLOADED

EXEMPT_PATHS = ("/healthz", "/readyz", "/metrics")


class Admission:
    """The slots of one process. Single event loop: plain counting, no lock, no await."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0

    def enter(self) -> bool:
        """Take a slot if one is free."""
        if self.in_flight >= self.limit:
            return False
        self.in_flight += 1
        return True

    def leave(self) -> None:
        self.in_flight -= 1


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
