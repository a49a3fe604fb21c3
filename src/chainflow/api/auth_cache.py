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
    tokens cannot fill it; a revoked key stops working within `ttl_s` in every process."""

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

    def put(self, token: str, key: ApiKey) -> None:
        if self.ttl_s <= 0:
            return
        if len(self._entries) >= _MAX_ENTRIES:
            self._entries.clear()
        self._entries[self.digest(token)] = (key, time.monotonic() + self.ttl_s)
