"""Authenticated API keys remembered for a few seconds per API process, so a burst of
requests with one key costs one database read, not one per request."""

import hashlib
import time
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
    """

    ttl_s: float
    _entries: dict[str, tuple[ApiKey, float]] = field(default_factory=dict)

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
