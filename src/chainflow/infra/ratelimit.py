"""Rate limiters: GCRA (the generic cell rate algorithm) in one Redis Lua script, shared by
every API process, and the same arithmetic in-process for the embedded shape.

GCRA keeps one number per bucket, the theoretical arrival time (TAT) of the next request:
each admitted request pushes it one emission interval (1 / rate) further, and a request is
refused while the TAT lies more than the burst tolerance (burst x interval) ahead of now. The
Redis script reads Redis's own clock (TIME), so processes on several hosts agree, and runs
atomically, so concurrent requests from several processes cannot both take the last token.
"""

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

_MAX_LOCAL_BUCKETS = 100_000


@dataclass(frozen=True)
class Rate:
    per_s: float
    burst: int  # requests allowed at once, at least 1

    @property
    def interval_us(self) -> int:
        return max(1, round(1_000_000 / self.per_s))


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    remaining: int  # requests allowed now, after this one
    reset_s: float  # until the bucket is full again
    retry_after_s: float  # 0 when allowed


class RateLimiter(Protocol):
    async def hit(self, bucket: str, rate: Rate) -> Verdict:
        """Count one request against `bucket`; whether it is allowed."""


# One GCRA step per bucket given, in order, under one TIME: exactly what as many calls of one
# bucket each would do, arriving together (a bucket given twice is counted twice).
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval
  local wait = new_tat - now - tolerance
  local n = #out
  if wait > 0 then
    out[n + 1], out[n + 2], out[n + 3], out[n + 4] = 0, 0, tat - now, wait
  else
    local ttl_ms = math.floor((new_tat - now) / 1000) + 1
    redis.call('SET', KEYS[i], string.format('%d', new_tat), 'PX', ttl_ms)
    out[n + 1] = 1
    out[n + 2] = math.floor((tolerance - (new_tat - now)) / interval)
    out[n + 3], out[n + 4] = new_tat - now, 0
  end
end
return out
"""
# Most hits one script call counts; the next ones start a call of their own.
_MAX_BATCH = 256


class _Hit(NamedTuple):
    key: str
    interval_us: int
    tolerance_us: int
    timeout_s: float | None
    verdict: "asyncio.Future[Verdict]"


class RedisRateLimiter:
    """Buckets in Redis, `prefix` + bucket, each expiring once full again.

    The hits of one turn of the event loop go to Redis together, in one script call: with
    many requests in flight they arrive in bursts (a group commit answers a group at once, and
    its callers send again at once), and each call costs the API process its own write, read
    and parsing (11% of its CPU per submission with one call per request, docs/performance.md
    item 33). Counting is unchanged: each hit is one GCRA step in Redis, atomic, in arrival
    order, under Redis's clock; a caller that gave up before the batch was sent is not
    counted, and the call is cancelled when every caller of its batch has given up.

    Latency: a hit waits for the rest of its turn before its call starts (a task), and its
    caller resumes one turn after the call has its answer: two turns more than a call of its
    own, which on a starved event loop (a loaded machine) are tens of ms. So `timeout_s` runs
    from the call, one timer per call: timed from each hit, those turns sent 12% of the
    requests of a loaded run to the fallback (docs/performance.md item 33).
    """

    def __init__(self, redis: Redis, *, prefix: str = "chainflow:ratelimit:") -> None:
        self._script = redis.register_script(_GCRA)
        self._prefix = prefix
        self._gathering: list[_Hit] | None = None  # this turn's hits, their call not started
        self._calls: set[asyncio.Task[None]] = set()

    async def hit(self, bucket: str, rate: Rate, *, timeout_s: float | None = None) -> Verdict:
        """Raises: TimeoutError when Redis has not answered within `timeout_s` of the call
        that counts this hit (OSError, RedisError: it failed)."""
        loop = asyncio.get_running_loop()
        interval = rate.interval_us
        verdict: asyncio.Future[Verdict] = loop.create_future()
        gathering = self._gathering
        if gathering is None or len(gathering) >= _MAX_BATCH:
            # The call's first step runs after every callback of this turn: their hits join.
            gathering = self._gathering = []
            call = loop.create_task(self._call(gathering))
            self._calls.add(call)
            call.add_done_callback(self._calls.discard)
        gathering.append(
            _Hit(self._prefix + bucket, interval, interval * rate.burst, timeout_s, verdict)
        )
        return await verdict

    async def _call(self, gathered: list[_Hit]) -> None:
        if self._gathering is gathered:
            self._gathering = None  # the next hit starts the next batch
        hits = [hit for hit in gathered if not hit.verdict.done()]  # not given up
        if hits:
            answer = await self._answer(hits)
            if answer is not None:
                _settle(hits, answer)

    async def _answer(self, hits: list[_Hit]) -> list[Any] | None:
        """The script's answer for `hits`; None: each caller was given the error instead."""
        call = asyncio.current_task()

        def given_up(_: "asyncio.Future[Verdict]") -> None:
            if call is not None and all(hit.verdict.cancelled() for hit in hits):
                call.cancel()  # nobody waits for the answer any more

        args: list[int] = []
        for hit in hits:
            args += (hit.interval_us, hit.tolerance_us)
            hit.verdict.add_done_callback(given_up)
        deadlines = [hit.timeout_s for hit in hits if hit.timeout_s is not None]
        try:
            async with asyncio.timeout(min(deadlines) if deadlines else None):
                answer: list[Any] = await self._script(keys=[hit.key for hit in hits], args=args)
            return answer
        except asyncio.CancelledError:
            _fail(hits, RedisError("the rate limiter's call was cancelled"))
            raise
        except Exception as exc:  # each caller's, as its own call would have raised it
            _fail(hits, exc)
            return None
        finally:
            for hit in hits:
                hit.verdict.remove_done_callback(given_up)


def _settle(hits: list[_Hit], answer: list[Any]) -> None:
    for index, hit in enumerate(hits):
        if not hit.verdict.done():
            allowed, remaining, reset_us, wait_us = (
                int(part) for part in answer[4 * index : 4 * index + 4]
            )
            hit.verdict.set_result(Verdict(bool(allowed), remaining, reset_us / 1e6, wait_us / 1e6))


def _fail(hits: list[_Hit], exc: BaseException) -> None:
    for hit in hits:
        if not hit.verdict.done():
            hit.verdict.set_exception(exc)


class LocalRateLimiter:
    """The same GCRA in this process's memory (one event loop: no lock needed)."""

    def __init__(self) -> None:
        self._tats: dict[str, int] = {}

    async def hit(self, bucket: str, rate: Rate) -> Verdict:
        now = time.monotonic_ns() // 1000
        interval = rate.interval_us
        tolerance = interval * rate.burst
        tat = max(self._tats.get(bucket, now), now)
        new_tat = tat + interval
        wait = new_tat - now - tolerance
        if wait > 0:
            return Verdict(False, 0, (tat - now) / 1e6, wait / 1e6)
        if len(self._tats) >= _MAX_LOCAL_BUCKETS:
            self._forget_full(now)
        self._tats[bucket] = new_tat
        return Verdict(True, (tolerance - (new_tat - now)) // interval, (new_tat - now) / 1e6, 0.0)

    def _forget_full(self, now: int) -> None:
        """Drop buckets that are full again (their TAT has passed): they hold no state."""
        self._tats = {bucket: tat for bucket, tat in self._tats.items() if tat > now}


async def hit_within(
    limiter: RateLimiter, bucket: str, rate: Rate, *, timeout_s: float
) -> Verdict | None:
    """`limiter.hit`, or None when it has not answered within `timeout_s` or failed (Redis
    down or slow): the caller decides whether that admits. In Redis, the time runs from
    the batch's call (one timer per call, not per hit): a hit is sent at most one turn of
    the event loop after it is made, and its caller resumes one turn after the answer."""
    try:
        if isinstance(limiter, RedisRateLimiter):
            return await limiter.hit(bucket, rate, timeout_s=timeout_s)
        async with asyncio.timeout(timeout_s):  # no task per call, unlike wait_for
            return await limiter.hit(bucket, rate)
    except (TimeoutError, OSError, RedisError):
        return None


def ceil_s(seconds: float) -> int:
    """Whole seconds for a header, at least 1."""
    return max(1, math.ceil(seconds))
