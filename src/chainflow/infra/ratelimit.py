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
from typing import Protocol

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


_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local wait = new_tat - now - tolerance
if wait > 0 then
  return {0, 0, tat - now, wait}
end
local ttl_ms = math.floor((new_tat - now) / 1000) + 1
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', ttl_ms)
return {1, math.floor((tolerance - (new_tat - now)) / interval), new_tat - now, 0}
"""


class RedisRateLimiter:
    """Buckets in Redis, `prefix` + bucket, each expiring once full again."""

    def __init__(self, redis: Redis, *, prefix: str = "chainflow:ratelimit:") -> None:
        self._script = redis.register_script(_GCRA)
        self._prefix = prefix

    async def hit(self, bucket: str, rate: Rate) -> Verdict:
        interval = rate.interval_us
        answer = await self._script(
            keys=[self._prefix + bucket], args=[interval, interval * rate.burst]
        )
        allowed, remaining, reset_us, wait_us = (int(part) for part in answer)
        return Verdict(bool(allowed), remaining, reset_us / 1e6, wait_us / 1e6)


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
    down or slow): the caller decides whether that admits."""
    try:
        async with asyncio.timeout(timeout_s):  # no task per call, unlike wait_for
            return await limiter.hit(bucket, rate)
    except (TimeoutError, OSError, RedisError):
        return None


def ceil_s(seconds: float) -> int:
    """Whole seconds for a header, at least 1."""
    return max(1, math.ceil(seconds))
