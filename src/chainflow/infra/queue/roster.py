"""The roster of live worker processes per chain: each worker's heartbeat in Redis.

Each process writes its owner id into one sorted set per chain it serves, scored with the
time of the beat, every `every_s`, drops members not heard for `ttl_s` and reads the rest
back (one pipelined round trip for all its chains). Lane placement (workers/placement.py)
asks it how many workers serve a chain, and who. Best effort, like the signals: a roster
not read for `ttl_s` (Redis away) names this process alone, so the worker drains as if it
were alone, as it did before placement. Scores are each host's wall clock: hosts whose
clocks differ by more than `ttl_s` may miss each other, which placement survives (a lane
left for a worker that does not come is taken anyway).
"""

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable

import redis.asyncio as redis
from redis.exceptions import RedisError

from chainflow.core.logging import get_logger

log = get_logger(__name__)
EVERY_S = 1.0
TTL_S = 3.0


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
    ) -> None:
        self._redis = redis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=5.0)
        self._owner = owner
        self._prefix = f"{prefix}:workers:"
        self._every_s = every_s
        self._ttl_s = ttl_s
        self._live: dict[int, tuple[float, tuple[str, ...]]] = {}  # chain → (read at, owners)
        self._failing = False

    def workers(self, chain_id: int) -> tuple[str, ...]:
        """The live workers serving `chain_id`, this one included, sorted; this one alone
        when the roster was not read within `ttl_s`."""
        read = self._live.get(chain_id)
        if read is None or time.monotonic() - read[0] > self._ttl_s:
            return (self._owner,)
        return read[1]

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
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                await asyncio.wait_for(self._leave(served), timeout=1.0)

    async def _beat_once(self, chain_ids: list[int]) -> None:
        now = time.time()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for chain_id in chain_ids:
                    key = f"{self._prefix}{chain_id}"
                    pipe.zadd(key, {self._owner: now})
                    pipe.zremrangebyscore(key, "-inf", now - self._ttl_s)
                    pipe.zrange(key, 0, -1)
                    pipe.expire(key, int(self._ttl_s * 10))  # a chain no worker serves
                replies = await asyncio.wait_for(pipe.execute(), timeout=self._ttl_s)
            self._failing = False
        except (RedisError, OSError, TimeoutError) as exc:
            if not self._failing:  # once per outage, not once per beat
                log.warning("roster.beat_failed", error=repr(exc)[:200])
            self._failing = True
            return
        read_at = time.monotonic()
        for index, chain_id in enumerate(chain_ids):
            members = replies[index * 4 + 2]
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
