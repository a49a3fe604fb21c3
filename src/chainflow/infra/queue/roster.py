"""The roster of live worker processes per chain: each worker's heartbeat in Redis.

Each process writes its owner id into one sorted set per chain it serves, scored with the
time of the beat, every `every_s`, drops members not heard for `ttl_s` and reads the rest
back (one Lua script, one round trip for all its chains). Lane placement (workers/placement.py)
asks it how many workers serve a chain, and who. Best effort, like the signals: a roster
not read for `ttl_s` (Redis away) names this process alone, so the worker drains as if it
were alone, as it did before placement. Scores are the Redis server's clock (`TIME` in the
script), not each host's: a dead worker whose host clock runs ahead does not stay live, and
a member scored more than `ttl_s` ahead of the server (written by another clock) is dropped.

A worker that sees itself alone while its round could be shared asks for the roster again at
once (`reread`, at most every `REREAD_S` per chain): at start, and when a worker joins, the
others' beats reach it up to `every_s` later, and meanwhile it took every lane (a whole round
of 2,048 in the 32-wallet batch run while the other worker idled; docs/performance.md item 54).
"""

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Iterable

import redis.asyncio as redis

from chainflow.core.logging import get_logger

log = get_logger(__name__)
EVERY_S = 1.0
TTL_S = 3.0
# A re-read: at most this often per chain (a lone worker under load pays <= 4 a second), and
# given up after this long (the round waits on it; the beat loop then finds Redis back).
REREAD_S = 0.25
REREAD_TIMEOUT_S = 0.5
# One beat for every chain in KEYS, at the Redis server's time (one clock for every host):
# score this owner (ARGV[1]) now, drop members not heard for ARGV[2] s and those scored more
# than ARGV[2] s ahead (written with another clock), expire a roster nobody beats for
# ARGV[3] s; returns each roster's members.
_BEAT = """
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local ttl = tonumber(ARGV[2])
local rosters = {}
for index, key in ipairs(KEYS) do
  redis.call('ZADD', key, string.format('%.6f', now), ARGV[1])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('(%.6f', now - ttl))
  redis.call('ZREMRANGEBYSCORE', key, string.format('(%.6f', now + ttl), '+inf')
  rosters[index] = redis.call('ZRANGE', key, 0, -1)
  redis.call('EXPIRE', key, ARGV[3])
end
return rosters
"""


class RedisRoster:
    """This process's heartbeats, and the live workers it last read, per chain id."""

    def __init__(
        self,
        url: str,
        *,
        owner: str,
        prefix: str = "chainflow",
        every_s: float = EVERY_S,
        ttl_s: float = TTL_S,
        reread_s: float = REREAD_S,
        reread_timeout_s: float = REREAD_TIMEOUT_S,
    ) -> None:
        self._redis = redis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=5.0)
        self._owner = owner
        self._prefix = f"{prefix}:workers:"
        self._every_s = every_s
        self._ttl_s = ttl_s
        self._reread_s = reread_s
        self._reread_timeout_s = reread_timeout_s
        self._live: dict[int, tuple[float, tuple[str, ...]]] = {}  # chain → (read at, owners)
        self._reread_at: dict[int, float] = {}  # chain → when `reread` last asked (monotonic)
        self._failing = False
        self._leaving = False  # `beat` has stopped: no re-read checks this process in again
        self._beat_script = self._redis.register_script(_BEAT)

    def workers(self, chain_id: int) -> tuple[str, ...]:
        """The live workers serving `chain_id`, this one included, sorted; this one alone
        when the roster was not read within `ttl_s`."""
        read = self._live.get(chain_id)
        if read is None or time.monotonic() - read[0] > self._ttl_s:
            return (self._owner,)
        return read[1]

    async def reread(self, chain_id: int) -> tuple[str, ...]:
        """The live workers serving `chain_id` (as `workers`), read again now with a beat for
        it, unless read within `reread_s`, while the beats fail or once the process leaves."""
        now, live = time.monotonic(), self._live.get(chain_id)
        read_at = max(self._reread_at.get(chain_id, -math.inf), live[0] if live else -math.inf)
        if not (self._failing or self._leaving) and now - read_at >= self._reread_s:
            self._reread_at[chain_id] = now
            await self._beat_once([chain_id], timeout_s=self._reread_timeout_s)
        return self.workers(chain_id)

    async def beat(self, chain_ids: Callable[[], Iterable[int]], stop: asyncio.Event) -> None:
        """Beat for the chains `chain_ids()` names every `every_s` until `stop`; then leave
        every roster, so that the others stop counting this process at once."""
        served: set[int] = set()
        try:
            while not stop.is_set():
                chains = sorted(chain_ids())
                served.update(chains)
                await self._beat_once(chains)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self._every_s)
        finally:
            self._leaving = True  # a round still under way must not check it in again
            served.update(self._reread_at)  # the chains only a re-read checked it in for
            with contextlib.suppress(Exception):  # best effort: the roster drops it in ttl_s
                await asyncio.wait_for(self._leave(served), timeout=1.0)

    async def _beat_once(self, chain_ids: list[int], *, timeout_s: float | None = None) -> None:
        if not chain_ids:
            return
        keys = [f"{self._prefix}{chain_id}" for chain_id in chain_ids]
        try:
            replies = await asyncio.wait_for(
                self._beat_script(
                    keys=keys, args=[self._owner, self._ttl_s, int(self._ttl_s * 10)]
                ),
                timeout=self._ttl_s if timeout_s is None else timeout_s,
            )
            self._failing = False
        # Never the worker's end (its loops are gathered with this one): beside redis-py's
        # errors a connection lost mid-command can surface as a RuntimeError from the
        # transport (a chaos run's worker died of one when Redis was killed and came back).
        except Exception as exc:
            if not self._failing:  # once per outage, not once per beat
                log.warning("roster.beat_failed", error=repr(exc)[:200])
            self._failing = True
            return
        read_at = time.monotonic()
        for chain_id, members in zip(chain_ids, replies, strict=True):
            owners = {_text(member) for member in members} | {self._owner}
            self._live[chain_id] = (read_at, tuple(sorted(owners)))

    async def _leave(self, chain_ids: Iterable[int]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for chain_id in chain_ids:
                pipe.zrem(f"{self._prefix}{chain_id}", self._owner)
            await pipe.execute()

    async def close(self) -> None:
        await self._redis.aclose()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
