"""The per-process cache of authenticated API keys: hits within the TTL, nothing after it,
nothing at all when disabled, and never a hit for a different token."""

import pytest

from chainflow.api.auth_cache import KeyCache
from chainflow.domain.apikeys.models import ApiKey


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr("chainflow.api.auth_cache.time.monotonic", fake)
    return fake


def test_hit_within_ttl_then_miss_after(clock: Clock) -> None:
    cache, key = KeyCache(ttl_s=5), ApiKey(prefix="abc", scopes=["read"])
    cache.put("cf_abc_secret", key, read_at=clock.now)
    clock.now += 4.9
    assert cache.get("cf_abc_secret") is key
    clock.now += 0.2
    assert cache.get("cf_abc_secret") is None


@pytest.mark.usefixtures("clock")
def test_other_token_never_hits() -> None:
    cache = KeyCache(ttl_s=5)
    cache.put("cf_abc_secret", ApiKey(prefix="abc", scopes=["read"]), read_at=100.0)
    assert cache.get("cf_abc_secreT") is None
    assert cache.get("cf_abc_") is None


@pytest.mark.usefixtures("clock")
def test_disabled_with_zero_ttl() -> None:
    cache = KeyCache(ttl_s=0)
    cache.put("cf_abc_secret", ApiKey(prefix="abc", scopes=["read"]), read_at=100.0)
    assert cache.get("cf_abc_secret") is None


@pytest.mark.usefixtures("clock")
def test_token_is_not_kept_in_clear() -> None:
    cache = KeyCache(ttl_s=5)
    cache.put("cf_abc_secret", ApiKey(prefix="abc", scopes=["read"]), read_at=100.0)
    assert "cf_abc_secret" not in repr(cache._entries)


def test_expiry_counts_from_when_the_read_began(clock: Clock) -> None:
    """A slow read (begun before a revocation committed) must not stretch the bound."""
    cache, key = KeyCache(ttl_s=5), ApiKey(prefix="abc", scopes=["read"])
    read_at = cache.now()
    clock.now += 3  # the database read that found the key took 3 s
    cache.put("cf_abc_secret", key, read_at=read_at)
    clock.now += 1.9
    assert cache.get("cf_abc_secret") is key
    clock.now += 0.2  # 5.1 s after the read began
    assert cache.get("cf_abc_secret") is None
