"""The one ASGI layer in front of the app (issue 17): request id, then the gate, then the
request's metrics, with one `send` wrapper per request.

Three layers each wrapping `send` cost a coroutine frame per layer and a call per layer for
every message; merged, a response's messages go through one `Reply` (docs/performance.md item
41). What each did is unchanged:
- every HTTP response carries `X-Request-ID` (the caller's if well formed, else a new one),
  bound to the request's logs;
- every request but the probes and `/metrics` passes the gate (gate.py): admission, the key
  and its rate limit before the body, the body's limits; a refusal is its problem, as before;
- every request but `/metrics` is counted by route template, method and status
  (request_metrics.py), `(unrouted)` when the edge answered it before routing;
- a HEAD request (but of an event stream, which never ends) is answered as its GET, without
  the body.
"""

import re
import time
import uuid

import structlog
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from chainflow.api.admission import EXEMPT_PATHS, STREAM_PATHS
from chainflow.api.gate import Gate
from chainflow.api.reply import Reply
from chainflow.api.request_metrics import RequestMetrics
from chainflow.core.settings import Settings

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_METRICS_PATH = "/metrics"


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.gate = Gate(app, settings)
        self.metrics = RequestMetrics() if settings.metrics_enabled else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "HEAD" and scope["path"] not in STREAM_PATHS:
            # Answered as the GET it asks about (RFC 9110 9.3.2: every GET route takes HEAD;
            # FastAPI's routes do not); uvicorn, which keeps its own scope, sends no body.
            scope = {**scope, "method": "GET"}
        started = time.perf_counter()
        headers = Headers(scope=scope)
        inbound = headers.get("x-request-id", "")
        request_id = inbound if _REQUEST_ID.match(inbound) else uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        reply = Reply(send, scope, request_id)
        path = scope["path"]
        try:
            if path in EXEMPT_PATHS:
                await self.app(scope, receive, reply)
            else:
                await self.gate(scope, headers, receive, reply)
        finally:
            if self.metrics is not None and path != _METRICS_PATH:
                self.metrics.record(scope, reply.status, time.perf_counter() - started)
