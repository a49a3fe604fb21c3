"""Every Prometheus metric of a Chainflow process, declared once (README "Operating Chainflow").

Each process exposes its own registry (API on `GET /metrics`, workers on `--metrics-port`):
counters count what this process did, and the gauges read from the database or from the
chain are set only where their source lives (lanes by the API, chain reads by the worker that
holds the chain's tracker lease), so a sum over processes never counts one thing twice.
Label sets are bounded: chain ids and wallet addresses of the registry, route templates,
endpoint hosts, error classes, webhook endpoint ids (one series per configured endpoint); never
a URL, a key or a request id.
"""

import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncEngine

from chainflow.core.urls import redact_url

# Cells: the hot paths' counts and observations in plain numbers, added to their series when
# a scrape collects (docs/performance.md item 52): prometheus-client takes a lock for every
# increment and walks the buckets in Python for every observation, ~0.3 and ~0.7-1.4 µs, and a
# confirmed transaction made ~15 of them. Each cell is written from one thread (its process's
# event loop) and read by the scrape's, under _FLUSHING, as the difference since the last read
# (a scrape landing inside an `observe` may show its bucket before its sum; the next catches up).
_FLUSHING = threading.Lock()


class CountCell:
    """One series of a counter: add to `count`; a scrape adds what is new to the series."""

    __slots__ = ("_child", "_flushed", "count")

    def __init__(self, child: Counter) -> None:
        self._child = child
        self._flushed = 0
        self.count = 0

    def flush(self) -> None:
        count = self.count
        if count != self._flushed:
            self._child.inc(count - self._flushed)
            self._flushed = count


class BinCell:
    """One series of a histogram: `observe` bins in plain ints (the series' own bounds, `le`
    as prometheus-client's: the first bound >= the amount); a scrape adds what is new."""

    __slots__ = ("_bounds", "_child", "_flushed", "_flushed_sum", "counts", "sum")

    def __init__(self, child: Histogram) -> None:
        self._child = child
        self._bounds: list[float] = list(child._upper_bounds)
        self.counts = [0] * len(self._bounds)
        self._flushed = [0] * len(self._bounds)
        self.sum = 0.0
        self._flushed_sum = 0.0

    def observe(self, amount: float) -> None:
        self.sum += amount
        if amount == amount:  # NaN: in the sum, in no bucket (as prometheus-client)
            self.counts[bisect_left(self._bounds, amount)] += 1

    def flush(self) -> None:
        for i, count in enumerate(self.counts):
            if count != self._flushed[i]:
                self._child._buckets[i].inc(count - self._flushed[i])
                self._flushed[i] = count
        total = self.sum
        if total != self._flushed_sum:
            self._child._sum.inc(total - self._flushed_sum)
            self._flushed_sum = total


class CellCounter(Counter):
    """A Counter whose hot callers count in a cell (`cell(*labels)`, looked up once)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cells: dict[tuple[str, ...], CountCell] = {}

    def cell(self, *labels: str) -> CountCell:
        """The cell of the series with these label values (of the counter itself: none); one
        per series, however often asked."""
        return _cell_of(self._cells, labels, lambda: CountCell(_series(self, labels)))

    def collect(self) -> Iterable[Any]:
        _flush(self._cells)
        return super().collect()


class CellHistogram(Histogram):
    """A Histogram whose hot callers observe into a cell (`cell(*labels)`, looked up once)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cells: dict[tuple[str, ...], BinCell] = {}

    def cell(self, *labels: str) -> BinCell:
        """The cell of the series with these label values (of the histogram itself: none);
        one per series, however often asked."""
        return _cell_of(self._cells, labels, lambda: BinCell(_series(self, labels)))

    def collect(self) -> Iterable[Any]:
        _flush(self._cells)
        return super().collect()


_Metric = TypeVar("_Metric", Counter, Histogram)


def _series(metric: _Metric, labels: tuple[str, ...]) -> _Metric:
    """The series a cell adds to; a labelled metric's cell must name every label (here, not
    at the first scrape, which would then fail every later one)."""
    if len(labels) != len(metric._labelnames):
        raise ValueError(f"{metric._name}: a cell names {len(metric._labelnames)} label value(s)")
    return metric.labels(*labels) if labels else metric


_Cell = TypeVar("_Cell", CountCell, BinCell)


def _cell_of(
    cells: dict[tuple[str, ...], _Cell], labels: tuple[str, ...], make: Callable[[], _Cell]
) -> _Cell:
    """The one cell of a series, made on first ask."""
    found = cells.get(labels)
    if found is None:
        found = cells[labels] = make()
    return found


def _flush(cells: Mapping[tuple[str, ...], CountCell | BinCell]) -> None:
    with _FLUSHING:
        for found in list(cells.values()):
            found.flush()


# Seconds: a transaction's stages run from ~10 ms (a signature) to hours (a stuck lane).
_STAGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600, 14400)
_FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)

# Transactions (counted by the process that committed the change)
TX_TRANSITIONS = CellCounter(
    "chainflow_tx_transitions",
    "Committed status changes of transaction requests (from 'none': created).",
    ["chain_id", "from", "to"],
)
TX_STAGE_SECONDS = CellHistogram(
    "chainflow_tx_stage_seconds",
    "Time a request spent in a stage: queued_submitted, submitted_mined, mined_confirmed, "
    "request_final.",
    ["chain_id", "stage"],
    buckets=_STAGE_BUCKETS,
)
TX_FEE_BUMPS = Counter(
    "chainflow_tx_fee_bumps",
    "Replacement attempts: outcome bump or cancel (signed), capped (none fits under the caps).",
    ["chain_id", "outcome"],
)
TX_REORGS = Counter(
    "chainflow_tx_reorgs", "Mined requests whose receipt left the canonical chain.", ["chain_id"]
)
TX_ERRORS = Counter(
    "chainflow_tx_errors",
    "Node answers to sends, by error class (infra/rpc/errors.py RpcErrorKind).",
    ["chain_id", "class"],
)

# Dependencies
RPC_REQUESTS = CellCounter(
    "chainflow_rpc_requests",
    "JSON-RPC requests (a batch counts once) by outcome: ok, error (the node answered an "
    "error object), transport (no valid answer).",
    ["chain_id", "endpoint", "method", "outcome"],
)
RPC_REQUEST_SECONDS = CellHistogram(
    "chainflow_rpc_request_seconds",
    "JSON-RPC request latency.",
    ["chain_id", "endpoint", "method"],
    buckets=_FAST_BUCKETS,
)
SIGNER_SECONDS = CellHistogram(
    "chainflow_signer_seconds", "Time to sign one transaction.", ["backend"], buckets=_FAST_BUCKETS
)

# API
API_REQUESTS = CellCounter(
    "chainflow_api_requests",
    "HTTP requests by route template, method and status.",
    ["route", "method", "status"],
)
API_REQUEST_SECONDS = CellHistogram(
    "chainflow_api_request_seconds",
    "HTTP request latency by route template.",
    ["route", "method"],
    buckets=_FAST_BUCKETS,
)
API_OVERLOADED = Counter(
    "chainflow_api_overloaded", "Requests refused 503 overloaded (admission control)."
)
API_RATE_LIMITED = Counter(
    "chainflow_api_rate_limited", "Requests refused 429 by a key's rate limit.", ["kind"]
)
API_RATE_LIMITER_ERRORS = Counter(
    "chainflow_api_rate_limiter_errors",
    "Rate checks Redis did not answer in time (then admitted or refused per settings).",
)

# Events and webhooks (counted by the worker that sequenced or delivered, once committed)
OUTBOX_LAG_SECONDS = CellHistogram(
    "chainflow_outbox_lag_seconds",
    "Time from an event's change to its cursor: when the stream, GET /v1/events and webhook "
    "fan-out can first see it.",
    buckets=_STAGE_BUCKETS,
)
WEBHOOK_DELIVERIES = Counter(
    "chainflow_webhook_deliveries",
    "Delivery attempts by what they did to their delivery: delivered (2xx), retry (failed, "
    "another attempt scheduled), gave_up (failed, retry schedule spent), dropped (its event "
    "was pruned before it could be sent).",
    ["outcome"],
)
WEBHOOK_ATTEMPT_ERRORS = Counter(
    "chainflow_webhook_attempt_errors",
    "Failed delivery attempts by error class (non_2xx, timeout, connect, …).",
    ["error"],
)
WEBHOOK_ATTEMPT_SECONDS = Histogram(
    "chainflow_webhook_attempt_seconds",
    "Duration of one delivery attempt (the HTTP exchange).",
    buckets=_FAST_BUCKETS,
)
WEBHOOK_DELIVERY_LAG_SECONDS = Histogram(
    "chainflow_webhook_delivery_lag_seconds",
    "Time from an event's change to its successful delivery, retries included.",
    buckets=_STAGE_BUCKETS,
)
WEBHOOK_ENDPOINTS_DISABLED = Counter(
    "chainflow_webhook_endpoints_disabled",
    "Endpoints this process disabled because every attempt failed for "
    "CHAINFLOW_WEBHOOK_DISABLE_AFTER_S.",
)


class _Switch:
    """Whether this process records metrics at all (`CHAINFLOW_METRICS_ENABLED`): the hot
    paths ask before they measure, so that off costs nothing but the question."""

    on = True


SWITCH = _Switch()


def configure(*, enabled: bool) -> None:
    """Turn this process's instrumentation on or off (at start, from the settings)."""
    SWITCH.on = enabled


def endpoint_label(url: str) -> str:
    """The host (and port) of an RPC URL: never its path, query or credentials (keys)."""
    return urlsplit(redact_url(url)).netloc


class HealthSource(Protocol):
    """An RPC endpoint pool: its chain and whether each endpoint (by label) is usable."""

    chain_id: int

    def usable_endpoints(self) -> list[tuple[str, bool]]: ...


@dataclass(frozen=True)
class LaneRow:
    """A lane's pending work, as the API's collector read it from the database."""

    chain_id: int
    wallet: str
    queued: int
    in_flight: int
    oldest_pending_at: float | None  # unix seconds of the oldest non-final request


@dataclass(frozen=True)
class WebhookBacklog:
    """A webhook endpoint's pending deliveries, as the API's collector read them."""

    webhook_id: str
    enabled: bool
    pending: int
    oldest_pending_at: float | None  # unix seconds of the oldest pending delivery's queuing


@dataclass(frozen=True)
class LaneReading:
    """What the tracker's holder last read from the chain for a lane."""

    wallet: str
    nonce_lag: int
    balance_wei: int


class _Snapshots(Collector):
    """Gauges replaced whole by their owners: lanes (API), chain reads (tracker holder), the
    database pools and RPC endpoint pools of this process, and the doorbell queue."""

    def __init__(self) -> None:
        self.lanes: list[LaneRow] = []
        self.paused: dict[tuple[int, str], int] = {}  # (chain id, reason) -> lanes
        self.heads: dict[int, tuple[int, float]] = {}  # chain id -> (block, block unix time)
        self.readings: dict[int, list[LaneReading]] = {}
        self.queue_jobs: dict[str, int] = {}
        self.webhooks: list[WebhookBacklog] = []
        self.pools: weakref.WeakKeyDictionary[AsyncEngine, str] = weakref.WeakKeyDictionary()
        self.endpoints: weakref.WeakSet[HealthSource] = weakref.WeakSet()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = time.time()
        yield from self._lanes(now)
        yield from self._chains(now)
        yield from self._dependencies()
        yield from self._webhooks(now)

    def _lanes(self, now: float) -> Iterator[GaugeMetricFamily]:
        labels = ["chain_id", "wallet"]
        queued = GaugeMetricFamily("chainflow_lane_queued", "Requests queued.", labels=labels)
        flying = GaugeMetricFamily(
            "chainflow_lane_in_flight", "Requests signed, submitted or mined.", labels=labels
        )
        oldest = GaugeMetricFamily(
            "chainflow_lane_oldest_pending_seconds",
            "Age of the lane's oldest non-final request (0: none).",
            labels=labels,
        )
        for row in self.lanes:
            key = [str(row.chain_id), row.wallet]
            queued.add_metric(key, row.queued)
            flying.add_metric(key, row.in_flight)
            age = 0.0 if row.oldest_pending_at is None else max(0.0, now - row.oldest_pending_at)
            oldest.add_metric(key, age)
        paused = GaugeMetricFamily(
            "chainflow_lanes_paused",
            "Enabled lanes the engine cannot sign for, by paused_reason.",
            labels=["chain_id", "reason"],
        )
        for (chain_id, reason), count in sorted(self.paused.items()):
            paused.add_metric([str(chain_id), reason], count)
        return iter((queued, flying, oldest, paused))

    def _chains(self, now: float) -> Iterator[GaugeMetricFamily]:
        head = GaugeMetricFamily(
            "chainflow_chain_head_block", "Latest block the tracker read.", labels=["chain_id"]
        )
        age = GaugeMetricFamily(
            "chainflow_chain_head_age_seconds",
            "Age of that block by its timestamp (grows while no new head is read).",
            labels=["chain_id"],
        )
        labels = ["chain_id", "wallet"]
        lag = GaugeMetricFamily(
            "chainflow_lane_nonce_lag",
            "Lane's next nonce minus the chain's pending nonce (signed nonces the node lacks).",
            labels=labels,
        )
        balance = GaugeMetricFamily(
            "chainflow_wallet_balance_wei", "Wallet balance the tracker last read.", labels=labels
        )
        for chain_id, (block, stamp) in self.heads.items():
            head.add_metric([str(chain_id)], block)
            age.add_metric([str(chain_id)], max(0.0, now - stamp))
        for chain_id, readings in self.readings.items():
            for reading in readings:
                lag.add_metric([str(chain_id), reading.wallet], reading.nonce_lag)
                balance.add_metric([str(chain_id), reading.wallet], reading.balance_wei)
        return iter((head, age, lag, balance))

    def _dependencies(self) -> Iterator[GaugeMetricFamily]:
        pool = GaugeMetricFamily(
            "chainflow_db_pool_in_use", "Database connections checked out.", labels=["pool"]
        )
        for engine, name in list(self.pools.items()):
            checked_out = getattr(engine.sync_engine.pool, "checkedout", None)
            pool.add_metric([name], checked_out() if callable(checked_out) else 0)
        healthy = GaugeMetricFamily(
            "chainflow_rpc_endpoint_healthy",
            "1 if the pool would route a request to the endpoint now.",
            labels=["chain_id", "endpoint"],
        )
        seen: dict[tuple[str, str], bool] = {}
        for source in list(self.endpoints):
            for endpoint, usable in source.usable_endpoints():
                seen[(str(source.chain_id), endpoint)] = usable
        for key, usable in seen.items():
            healthy.add_metric(list(key), 1 if usable else 0)
        jobs = GaugeMetricFamily(
            "chainflow_queue_jobs", "Doorbell jobs by state.", labels=["state"]
        )
        for state, count in self.queue_jobs.items():
            jobs.add_metric([state], count)
        return iter((pool, healthy, jobs))

    def _webhooks(self, now: float) -> Iterator[GaugeMetricFamily]:
        labels = ["webhook_id"]
        backlog = GaugeMetricFamily(
            "chainflow_webhook_backlog",
            "Pending deliveries of an enabled endpoint (due, waiting to retry, or in flight).",
            labels=labels,
        )
        oldest = GaugeMetricFamily(
            "chainflow_webhook_oldest_pending_seconds",
            "Age of an enabled endpoint's oldest pending delivery (0: none).",
            labels=labels,
        )
        enabled = GaugeMetricFamily(
            "chainflow_webhook_endpoint_enabled",
            "1 if the endpoint is enabled, 0 if disabled (by PATCH or after failing everything).",
            labels=labels,
        )
        for row in self.webhooks:
            enabled.add_metric([row.webhook_id], 1 if row.enabled else 0)
            if not row.enabled:  # nothing is sent to it: its backlog is not a delay
                continue
            backlog.add_metric([row.webhook_id], row.pending)
            age = 0.0 if row.oldest_pending_at is None else max(0.0, now - row.oldest_pending_at)
            oldest.add_metric([row.webhook_id], age)
        return iter((backlog, oldest, enabled))


SNAPSHOTS = _Snapshots()
REGISTRY.register(SNAPSHOTS)


def watch_pool(engine: AsyncEngine, name: str) -> None:
    """Expose `engine`'s connections in use as `chainflow_db_pool_in_use{pool=name}`."""
    SNAPSHOTS.pools[engine] = name


def watch_endpoints(source: HealthSource) -> None:
    """Expose the health of `source`'s endpoints (kept while `source` lives)."""
    SNAPSHOTS.endpoints.add(source)


def set_lanes(rows: Sequence[LaneRow], paused: Mapping[tuple[int, str], int]) -> None:
    """The lanes' pending work, and how many lanes of each chain show each paused_reason."""
    SNAPSHOTS.lanes = list(rows)
    SNAPSHOTS.paused = dict(paused)


def set_chain_reading(
    chain_id: int, *, head: tuple[int, float], lanes: Iterable[LaneReading]
) -> None:
    """Record a chain's head (block, timestamp) and its lanes' readings."""
    SNAPSHOTS.heads[chain_id] = head
    SNAPSHOTS.readings[chain_id] = list(lanes)


def forget_chain(chain_id: int) -> None:
    """Drop a chain's readings: another process holds its tracker now and reports them."""
    SNAPSHOTS.heads.pop(chain_id, None)
    SNAPSHOTS.readings.pop(chain_id, None)


def set_queue_jobs(counts: dict[str, int]) -> None:
    SNAPSHOTS.queue_jobs = dict(counts)


def set_webhooks(rows: Sequence[WebhookBacklog]) -> None:
    SNAPSHOTS.webhooks = list(rows)
