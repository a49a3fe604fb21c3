"""Failover across one chain's RPC endpoints: chain id checks, circuit breakers, 429 backoff.

Routing: endpoints are tried in the configured order (most preferred first). An endpoint is
skipped while it is on the wrong chain, backing off after a 429, or its breaker is open. Before
its first use, and as the half-open probe once its open period ends, an endpoint answers
`eth_chainId`; a wrong answer disables it for the life of the pool.

Failures: a transport error, HTTP 5xx or timeout counts towards the endpoint's breaker and the
request moves to the next endpoint; HTTP 429 backs the endpoint off (Retry-After, else
exponentially) without touching the breaker. A result that is not of its method's shape (a bad
hex quantity, a receipt without its block number: answers.py) is `RpcMalformedAnswer`, a
transport failure of that endpoint like the others. A JSON-RPC error object is the node's
answer: it is raised as `RpcCallError` and never failed over.

"Maybe sent": a request that failed after it left (timeout, dropped connection, 5xx) may have
been executed by the node. Such a failure is failed over only when `retry_on_failover` allows
it; by default it does, except for transaction sends, which raise the `RpcTransportError` so
the caller can treat it as "maybe sent" (`is_unsent` false). Failures that certainly did not
reach the node (connection refused, 429) are always failed over.
"""

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any, TypeVar

import aiohttp

from chainflow.core.logging import get_logger
from chainflow.core.urls import redact_url
from chainflow.infra import metrics
from chainflow.infra.metrics import endpoint_label
from chainflow.infra.rpc.answers import MalformedAnswer, quantity
from chainflow.infra.rpc.client import (
    DEFAULT_MAX_RESPONSE_BYTES,
    Call,
    RpcCallError,
    RpcClient,
    RpcTransportError,
)
from chainflow.infra.rpc.errors import RpcErrorKind, RpcFailure, classify

__all__ = [
    "SEND_METHODS",
    "BreakerSettings",
    "EndpointHealth",
    "EndpointPool",
    "EndpointState",
    "NoHealthyEndpoint",
]

log = get_logger(__name__)
T = TypeVar("T")

# A copy of a send that reaches a second node after the first executed it cannot be told
# apart from a new send, so these are not failed over by default once the request has left.
SEND_METHODS = frozenset({"eth_sendRawTransaction", "eth_sendTransaction"})
_BACKOFF_BASE_S = 1.0
_BACKOFF_MAX_S = 300.0  # also caps Retry-After: a longer one is a quota reset, better re-asked


class NoHealthyEndpoint(RpcTransportError):
    """Every endpoint was skipped or failed. `is_unsent` is true if no attempt may have landed."""

    code = "rpc_no_healthy_endpoint"


class EndpointState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerSettings:
    """Open after `failures_to_open` consecutive failures; after `open_s`, probe once."""

    failures_to_open: int = 3
    open_s: float = 30.0


@dataclass(frozen=True)
class EndpointHealth:
    """One endpoint's status, safe to show: the URL is redacted."""

    url: str
    state: EndpointState
    consecutive_failures: int
    last_error_kind: RpcErrorKind | None
    is_verified: bool  # answered the right chain id at least once
    is_wrong_chain: bool
    rate_limited_for_s: float

    @property
    def is_usable(self) -> bool:
        """Whether the pool would route a request here now (after a probe, if unverified)."""
        is_blocked = self.state is EndpointState.OPEN or self.rate_limited_for_s > 0
        return not (self.is_wrong_chain or is_blocked)


# The request metrics' cells by (chain id, endpoint label, method[, outcome]), each looked up
# once (infra/metrics.py): bounded as the labels are.
_REQUESTS: dict[tuple[int, str, str, str], metrics.CountCell] = {}
_TIMES: dict[tuple[int, str, str], metrics.BinCell] = {}


@dataclass
class _Endpoint:
    client: RpcClient
    url: str  # redacted
    is_verified: bool = False
    is_wrong_chain: bool = False
    failures: int = 0
    opened_at: float | None = None
    rate_limit_strikes: int = 0
    rate_limited_until: float = -math.inf
    last_error_kind: RpcErrorKind | None = None
    probing: asyncio.Lock = field(default_factory=asyncio.Lock)
    label: str = ""  # host and port: the metrics' `endpoint` label

    def __post_init__(self) -> None:
        self.label = endpoint_label(self.url)


class _Gate(Enum):
    SKIP = "skip"
    USE = "use"
    PROBE = "probe"


class EndpointPool:
    """JSON-RPC to one chain over several endpoints. Safe for concurrent use in one event loop."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        chain_id: int,
        urls: Sequence[str],
        timeout_s: float = 10.0,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        breaker: BreakerSettings = BreakerSettings(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not urls:
            raise ValueError("an endpoint pool needs at least one URL")
        self.chain_id = chain_id
        self._breaker = breaker
        self._clock = clock
        self._endpoints = [
            _Endpoint(
                RpcClient(session, url, timeout_s=timeout_s, max_response_bytes=max_response_bytes),
                redact_url(url),
            )
            for url in urls
        ]
        metrics.watch_endpoints(self)

    async def call(
        self, method: str, params: Sequence[Any] = (), *, retry_on_failover: bool | None = None
    ) -> Any:
        """Call `method` on the first endpoint able to answer; return its `result`.

        `retry_on_failover` allows resending after a failure that may have reached a node;
        None means yes unless `method` is in SEND_METHODS.

        Raises:
            RpcCallError: the node answered with an error object; never failed over.
            RpcTransportError: the request failed after it may have reached a node and was not
                resent: a send must be treated as "maybe sent".
            NoHealthyEndpoint: every endpoint was skipped or failed; `is_unsent` is true if
                nothing can have reached a node.
        """
        is_retryable = _is_retryable([method], retry_on_failover)
        return await self._route(
            lambda client: client.call(method, params), is_retryable, method=method
        )

    async def batch(
        self, calls: Sequence[Call], *, retry_on_failover: bool | None = None
    ) -> list[Any]:
        """Send one JSON-RPC batch as `call` sends one call; each entry is a result or an error."""
        if not calls:
            return []
        is_retryable = _is_retryable((method for method, _ in calls), retry_on_failover)
        return await self._route(
            lambda client: client.batch(calls), is_retryable, method=_batch_label(calls)
        )

    def health(self) -> list[EndpointHealth]:
        """Return every endpoint's status, in preference order."""
        now = self._clock()
        return [
            EndpointHealth(
                url=endpoint.url,
                state=self._state(endpoint, now),
                consecutive_failures=endpoint.failures,
                last_error_kind=endpoint.last_error_kind,
                is_verified=endpoint.is_verified,
                is_wrong_chain=endpoint.is_wrong_chain,
                rate_limited_for_s=max(0.0, endpoint.rate_limited_until - now),
            )
            for endpoint in self._endpoints
        ]

    def usable_endpoints(self) -> list[tuple[str, bool]]:
        """Each endpoint's metrics label (host and port) and whether it is usable now."""
        return [(e.label, h.is_usable) for e, h in zip(self._endpoints, self.health(), strict=True)]

    async def _route(
        self, send: Callable[[RpcClient], Awaitable[T]], is_retryable: bool, *, method: str
    ) -> T:
        failures: list[RpcTransportError] = []
        for endpoint in self._endpoints:
            if not await self._admit(endpoint):
                continue
            try:
                return await self._attempt(endpoint, send, method)
            except RpcTransportError as exc:
                if not (is_retryable or exc.is_unsent):
                    raise
                failures.append(exc)
        is_unsent = all(failure.is_unsent for failure in failures)
        last = f": last error: {failures[-1].detail}" if failures else ""
        detail = f"no healthy RPC endpoint for chain {self.chain_id}{last}"
        error = NoHealthyEndpoint(detail, is_unsent=is_unsent)
        raise error from (failures[-1] if failures else None)

    async def _attempt(
        self, endpoint: _Endpoint, send: Callable[[RpcClient], Awaitable[T]], method: str
    ) -> T:
        started = time.perf_counter()
        try:
            answer = await send(endpoint.client)
        except RpcTransportError as exc:
            self._measure(endpoint, method, "transport", started)
            self._record_failure(endpoint, exc)
            raise
        except RpcCallError:
            self._measure(endpoint, method, "error", started)
            self._record_success(endpoint)  # the node answered: the endpoint works
            raise
        self._measure(endpoint, method, "ok", started)
        self._record_success(endpoint)
        return answer

    def _measure(self, endpoint: _Endpoint, method: str, outcome: str, started: float) -> None:
        if not metrics.SWITCH.on:
            return
        took = time.perf_counter() - started
        key = (self.chain_id, endpoint.label, method)
        count = _REQUESTS.get((*key, outcome))
        if count is None:
            labels = (str(self.chain_id), endpoint.label, method)
            count = _REQUESTS[(*key, outcome)] = metrics.RPC_REQUESTS.cell(*labels, outcome)
            if key not in _TIMES:
                _TIMES[key] = metrics.RPC_REQUEST_SECONDS.cell(*labels)
        count.count += 1
        _TIMES[key].observe(took)

    async def _admit(self, endpoint: _Endpoint) -> bool:
        """Whether `endpoint` may take a request now; verify its chain or probe it first."""
        gate = self._gate(endpoint)
        if gate is not _Gate.PROBE:
            return gate is _Gate.USE
        async with endpoint.probing:
            gate = self._gate(endpoint)  # another caller may have probed it while we waited
            if gate is not _Gate.PROBE:
                return gate is _Gate.USE
            return await self._probe(endpoint)

    def _gate(self, endpoint: _Endpoint) -> _Gate:
        now = self._clock()
        state = self._state(endpoint, now)
        if endpoint.is_wrong_chain or now < endpoint.rate_limited_until:
            return _Gate.SKIP
        if state is EndpointState.OPEN:
            return _Gate.SKIP
        if endpoint.is_verified and state is EndpointState.CLOSED:
            return _Gate.USE
        return _Gate.PROBE

    async def _probe(self, endpoint: _Endpoint) -> bool:
        try:
            answer = await endpoint.client.call("eth_chainId")
        except RpcTransportError as exc:
            self._record_failure(endpoint, exc)
            return False
        except RpcCallError as exc:
            # A node that cannot say its chain id cannot be trusted with requests.
            kind = classify(RpcFailure(message=exc.message, code=exc.rpc_code, data=exc.data))
            self._count_failure(endpoint, kind)
            return False
        if _chain_id_of(answer) != self.chain_id:
            self._disable(endpoint, answer)
            return False
        endpoint.is_verified = True
        self._record_success(endpoint)
        return True

    def _disable(self, endpoint: _Endpoint, answer: Any) -> None:
        endpoint.is_wrong_chain = True
        log.error(
            "rpc_endpoint.disabled",
            reason="wrong_chain",
            url=endpoint.url,
            expected_chain_id=self.chain_id,
            answered_chain_id=str(answer)[:32],
        )

    def _record_failure(self, endpoint: _Endpoint, exc: RpcTransportError) -> None:
        failure = RpcFailure(message=exc.detail, http_status=exc.http_status, is_transport=True)
        kind = classify(failure)
        if kind is RpcErrorKind.RATE_LIMITED:
            self._back_off(endpoint, exc.retry_after_s)
        else:
            self._count_failure(endpoint, kind)

    def _count_failure(self, endpoint: _Endpoint, kind: RpcErrorKind) -> None:
        endpoint.failures += 1
        endpoint.last_error_kind = kind
        # A failure while open or half-open (a failed probe, or a request that was already in
        # flight) restarts the open period.
        if endpoint.opened_at is None and endpoint.failures < self._breaker.failures_to_open:
            return
        if endpoint.opened_at is None:
            log.warning(
                "rpc_endpoint.opened", url=endpoint.url, failures=endpoint.failures, kind=kind
            )
        endpoint.opened_at = self._clock()

    def _back_off(self, endpoint: _Endpoint, retry_after_s: float | None) -> None:
        endpoint.rate_limit_strikes += 1
        endpoint.last_error_kind = RpcErrorKind.RATE_LIMITED
        exponential_s = _BACKOFF_BASE_S * 2 ** (endpoint.rate_limit_strikes - 1)
        delay_s = min(exponential_s if retry_after_s is None else retry_after_s, _BACKOFF_MAX_S)
        endpoint.rate_limited_until = self._clock() + delay_s
        log.warning("rpc_endpoint.rate_limited", url=endpoint.url, backoff_s=delay_s)

    def _record_success(self, endpoint: _Endpoint) -> None:
        if endpoint.opened_at is not None:
            log.info("rpc_endpoint.closed", url=endpoint.url)
        endpoint.failures = 0
        endpoint.opened_at = None
        endpoint.rate_limit_strikes = 0

    def _state(self, endpoint: _Endpoint, now: float) -> EndpointState:
        if endpoint.opened_at is None:
            return EndpointState.CLOSED
        if now - endpoint.opened_at < self._breaker.open_s:
            return EndpointState.OPEN
        return EndpointState.HALF_OPEN


def _batch_label(calls: Sequence[Call]) -> str:
    """`batch:<method>` when every call of a batch is one method, else `batch` (bounded)."""
    methods = {method for method, _ in calls}
    return f"batch:{methods.pop()}" if len(methods) == 1 else "batch"


def _is_retryable(methods: Iterable[str], retry_on_failover: bool | None) -> bool:
    if retry_on_failover is not None:
        return retry_on_failover
    return SEND_METHODS.isdisjoint(methods)


def _chain_id_of(answer: Any) -> int | None:
    if not isinstance(answer, str):
        return None
    try:
        return quantity(answer)
    except MalformedAnswer:
        return None
