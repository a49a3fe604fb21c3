"""Admission control: at most `limit` requests in flight per API process; the next one is
refused at once with a 503 problem and Retry-After, instead of waiting on the database pool
(latency without bound, memory growing with the backlog, then a timeout)."""

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from chainflow.core.redaction import scrub_text

_EXEMPT = ("/healthz", "/readyz", "/metrics")


class AdmissionMiddleware:
    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _EXEMPT:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            await _refuse(scope, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


async def _refuse(scope: Scope, send: Send) -> None:
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
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})
