"""Per-key rate limits at the edge (issue 21): after authentication, before the body is read.

Reads (GET, HEAD) and writes (the other methods) count in separate buckets, at the key's own
rate (`chainflow apikey create --rate`) or the settings' defaults, with a burst of
`CHAINFLOW_RATE_LIMIT_BURST_S` seconds of the rate. With Redis the buckets are shared by every
API process; without it (embedded), they live in the one process.

A refusal is `429 rate_limited` with `Retry-After` (whole seconds) and the IETF draft's
`RateLimit-Limit` (the burst), `RateLimit-Remaining` (0) and `RateLimit-Reset` (seconds
until the bucket is full again). Redis gets `CHAINFLOW_RATE_LIMIT_REDIS_TIMEOUT_S` to answer;
then the request is admitted (fail open, the default: a slow Redis must not stop payments)
or refused 503 `rate_limiter_unavailable` (`CHAINFLOW_RATE_LIMIT_FAIL_OPEN=false`).
"""

from starlette.types import Scope

from chainflow.api.resources import Resources
from chainflow.core.errors import TooManyRequests, Unavailable
from chainflow.core.logging import get_logger
from chainflow.core.settings import Settings
from chainflow.domain.apikeys.models import ApiKey
from chainflow.infra.metrics import API_RATE_LIMITED, API_RATE_LIMITER_ERRORS
from chainflow.infra.ratelimit import Rate, ceil_s, hit_within

_CHECKED = "chainflow.rate_checked"
_READS = frozenset({"GET", "HEAD", "OPTIONS"})
log = get_logger(__name__)


class RateLimited(TooManyRequests):
    code = "rate_limited"
    title = "Too many requests"

    def __init__(self, detail: str, *, headers: dict[str, str], **extra: object) -> None:
        super().__init__(detail, **extra)
        self.headers = headers


class RateLimiterUnavailable(Unavailable):
    code = "rate_limiter_unavailable"


def _rate(per_s: float, settings: Settings) -> Rate | None:
    if per_s <= 0:
        return None
    return Rate(per_s, max(1, int(per_s * settings.rate_limit_burst_s)))


def rates_of(key: ApiKey, settings: Settings) -> tuple[Rate | None, Rate | None]:
    """The key's (read, write) rates; None: unlimited."""
    read = (
        key.read_rate_per_s if key.read_rate_per_s is not None else settings.rate_limit_read_per_s
    )
    write = (
        key.write_rate_per_s
        if key.write_rate_per_s is not None
        else settings.rate_limit_write_per_s
    )
    return _rate(read, settings), _rate(write, settings)


async def enforce(resources: Resources, scope: Scope, key: ApiKey) -> None:
    """Count this request against the key's bucket, once per request. Raises: RateLimited,
    RateLimiterUnavailable (Redis silent and failing closed)."""
    if scope.get(_CHECKED):
        return
    scope[_CHECKED] = True
    kind = "read" if scope["method"] in _READS else "write"
    read, write = rates_of(key, resources.settings)
    rate = read if kind == "read" else write
    if rate is None:
        return
    settings = resources.settings
    verdict = await hit_within(
        resources.limiter, f"{key.id}:{kind}", rate, timeout_s=settings.rate_limit_redis_timeout_s
    )
    if verdict is None:
        API_RATE_LIMITER_ERRORS.inc()
        log.warning("api.rate_limiter_unanswered", fail_open=settings.rate_limit_fail_open)
        if settings.rate_limit_fail_open:
            return
        raise RateLimiterUnavailable("the rate limiter did not answer; retry shortly")
    if verdict.allowed:
        return
    API_RATE_LIMITED.labels(kind).inc()
    retry_after = ceil_s(verdict.retry_after_s)
    raise RateLimited(
        f"this API key may make {rate.per_s:g} {kind}s per second (burst {rate.burst}); "
        f"retry in {retry_after} s",
        headers={
            "Retry-After": str(retry_after),
            "RateLimit-Limit": str(rate.burst),
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": str(ceil_s(verdict.reset_s)),
        },
        limit_per_s=rate.per_s,
        burst=rate.burst,
        kind=kind,
    )
