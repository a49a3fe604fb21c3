"""Request count and latency by route template, method and status (issue 18).

Recorded by the edge (edge.py) when a request ends; the template
(`/v1/transactions/{tx_id}`), never the raw path, keeps the label set bounded and free of ids
and pasted keys. A request the edge refused before routing (overload, 401 before the body) is
`(unrouted)`.
"""

from starlette.types import Scope

from chainflow.infra import metrics

_UNROUTED = "(unrouted)"


class RequestMetrics:
    """The request count and latency series of one process, each looked up once (their cells:
    infra/metrics.py)."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, int], metrics.CountCell] = {}
        self._times: dict[tuple[str, str], metrics.BinCell] = {}

    def record(self, scope: Scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None) or _UNROUTED
        method = scope["method"]
        count = self._counts.get((route, method, status))
        if count is None:
            count = metrics.API_REQUESTS.cell(route, method, str(status))
            self._counts[(route, method, status)] = count
        count.count += 1
        timer = self._times.get((route, method))
        if timer is None:
            timer = self._times[(route, method)] = metrics.API_REQUEST_SECONDS.cell(route, method)
        timer.observe(seconds)
