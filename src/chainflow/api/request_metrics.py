"""Request count and latency by route template, method and status (issue 18).

Plain ASGI rather than BaseHTTPMiddleware (a task and a stream per request); the template
(`/v1/transactions/{tx_id}`), never the raw path, keeps the label set bounded and free of ids
and pasted keys. A request the edge refused before routing (overload, 401 before the body) is
`(unrouted)`.
"""

import time

from prometheus_client.metrics import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chainflow.infra import metrics

_UNROUTED = "(unrouted)"


class RequestMetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._counts: dict[tuple[str, str, int], Counter] = {}
        self._times: dict[tuple[str, str], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/metrics":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # no response started: the server answers 500

        async def noted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noted)
        finally:
            self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None) or _UNROUTED
        method = scope["method"]
        count = self._counts.get((route, method, status))
        if count is None:
            count = metrics.API_REQUESTS.labels(route, method, str(status))
            self._counts[(route, method, status)] = count
        count.inc()
        timer = self._times.get((route, method))
        if timer is None:
            timer = self._times[(route, method)] = metrics.API_REQUEST_SECONDS.labels(route, method)
        timer.observe(seconds)
