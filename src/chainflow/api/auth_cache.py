"""Authenticated API keys remembered for a few seconds per API process, so a burst of
requests with one key costs one database read, not one per request."""

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from chainflow.domain.apikeys.models import ApiKey

_MAX_ENTRIES = 10_000


@dataclass
class KeyCache:
    """token digest → (key, expiry). Only successful authentications are kept, so invalid
    tokens cannot fill it.

    An entry expires `ttl_s` after the moment its database read *began* (`read_at`), not
    after it ended: a read that began before a revocation committed is the only one that can
    still see the key live, so a revoked key is refused by every process for every request
    authenticated more than `ttl_s` after the revocation committed, however slow the read.
    Requests that miss while a read of their token is under way share it (`load`) if it began
    less than `ttl_s` before them: the same bound, as if its answer were already an entry.
    """

    ttl_s: float
    _entries: dict[str, tuple[ApiKey, float]] = field(default_factory=dict)
    _reads: dict[str, tuple["asyncio.Task[ApiKey]", float]] = field(default_factory=dict)

    @staticmethod
    def digest(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def get(self, token: str) -> ApiKey | None:
        if self.ttl_s <= 0:
            return None
        found = self._entries.get(self.digest(token))
        if found is None or found[1] < time.monotonic():
            return None
        return found[0]

    @staticmethod
    def now() -> float:
        """The clock of `read_at`: take it before the database read that finds the key."""
        return time.monotonic()

    def put(self, token: str, key: ApiKey, *, read_at: float) -> None:
        if self.ttl_s <= 0:
            return
        if len(self._entries) >= _MAX_ENTRIES:
            self._entries.clear()
        self._entries[self.digest(token)] = (key, read_at + self.ttl_s)

    async def load(self, token: str, read: Callable[[], Awaitable[ApiKey]]) -> ApiKey:
        """The key `read()` finds for `token` (a database read; raises what it raises), then
        remembered. Without this, the requests that missed together (a burst when an entry
        expires: 64 in flight, ~8 reads a second, 4% of the API's CPU) each read it."""
        digest = self.digest(token)
        read_at = self.now()
        under_way = self._reads.get(digest)
        if under_way is not None and read_at - under_way[1] < self.ttl_s:
            return await asyncio.shield(under_way[0])  # another caller's end cancels not it

        async def reading() -> ApiKey:
            key = await read()
            self.put(token, key, read_at=read_at)
            return key

        task = asyncio.ensure_future(reading())
        self._reads[digest] = (task, read_at)

        def done(_: "asyncio.Task[ApiKey]") -> None:
            if self._reads.get(digest, (None, 0.0))[0] is task:
                del self._reads[digest]
            if not task.cancelled():
                task.exception()  # retrieved, even when every caller has gone

        task.add_done_callback(done)
        return await asyncio.shield(task)
