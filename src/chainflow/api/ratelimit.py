"""Per-key rate limits at the edge (issue 21): after authentication, before the body is read.

Reads (GET, HEAD) and writes (the other methods) count in separate buckets, at the key's own
rate (`chainflow apikey create --rate`) or the settings' defaults, with a burst of
`CHAINFLOW_RATE_LIMIT_BURST_S` seconds of the rate. With Redis the buckets are shared by every
API process; without it (embedded), they live in the one process.

Every counted response carries the IETF draft's `RateLimit-Limit` (the burst),
`RateLimit-Remaining` and `RateLimit-Reset` (seconds until the bucket is full again); a refusal
is `429 rate_limited` with those and `Retry-After` (whole seconds).

Redis gets `CHAINFLOW_RATE_LIMIT_REDIS_TIMEOUT_S` to answer (a busy event loop counts too: the
answer must be read in time); then the request is counted in this process's own bucket for the
key and admitted if that allows it (fail open, the default: a slow Redis must not stop
payments, and each process still holds the key to its rate), or refused 503
`rate_limiter_unavailable` (`CHAINFLOW_RATE_LIMIT_FAIL_OPEN=false`).
"""

from starlette.types import Scope

from chainflow.api.resources import Resources
from chainflow.core.errors import TooManyRequests, Unavailable
from chainflow.core.logging import get_logger
from chainflow.core.settings import Settings
from chainflow.domain.apikeys.models import ApiKey
from chainflow.infra.metrics import API_RATE_LIMITED, API_RATE_LIMITER_ERRORS
from chainflow.infra.ratelimit import Rate, RateLimiter, Verdict, ceil_s, hit_within

_CHECKED = "chainflow.rate_checked"
_HEADERS = "chainflow.rate_headers"
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


def _headers(burst: int, remaining: int, reset_s: float) -> list[tuple[str, str]]:
    return [
        ("RateLimit-Limit", str(burst)),
        ("RateLimit-Remaining", str(remaining)),
        ("RateLimit-Reset", str(ceil_s(reset_s))),
    ]


def headers_of(scope: Scope) -> list[tuple[str, str]] | None:
    """The RateLimit-* headers of an admitted request, for its response (gate.py)."""
    found = scope.get(_HEADERS)
    return found if isinstance(found, list) else None


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
    verdict = await decide(
        resources.limiter, resources.fallback, f"{key.id}:{kind}", rate, resources.settings
    )
    if verdict.allowed:
        scope[_HEADERS] = _headers(rate.burst, verdict.remaining, verdict.reset_s)
        return
    API_RATE_LIMITED.labels(kind).inc()
    retry_after = ceil_s(verdict.retry_after_s)
    raise RateLimited(
        f"this API key may make {rate.per_s:g} {kind}s per second (burst {rate.burst}); "
        f"retry in {retry_after} s",
        headers={
            "Retry-After": str(retry_after),
            **dict(_headers(rate.burst, 0, verdict.reset_s)),
        },
        limit_per_s=rate.per_s,
        burst=rate.burst,
        kind=kind,
    )


async def decide(
    limiter: RateLimiter, fallback: RateLimiter, bucket: str, rate: Rate, settings: Settings
) -> Verdict:
    """The shared limiter's verdict; when it does not answer in time, the process's own
    bucket's (fail open: each process then admits at most the key's rate) or a 503 (fail
    closed). Raises: RateLimiterUnavailable."""
    timeout_s = settings.rate_limit_redis_timeout_s
    verdict = await hit_within(limiter, bucket, rate, timeout_s=timeout_s)
    if verdict is not None:
        return verdict
    API_RATE_LIMITER_ERRORS.inc()
    log.warning("api.rate_limiter_unanswered", fail_open=settings.rate_limit_fail_open)
    if not settings.rate_limit_fail_open:
        raise RateLimiterUnavailable("the rate limiter did not answer; retry shortly")
    return await fallback.hit(bucket, rate)
