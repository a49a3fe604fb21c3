"""The per-process cache of authenticated API keys: hits within the TTL, nothing after it,
nothing at all when disabled, and never a hit for a different token; requests that miss
together share one read, within the same bound."""

import asyncio
from types import SimpleNamespace

import pytest

from chainflow.api.auth_cache import KeyCache
from chainflow.domain.apikeys.models import ApiKey
from tests.support.polling import eventually


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()  # the cache's clock only: the event loop's runs on
    monkeypatch.setattr("chainflow.api.auth_cache.time", SimpleNamespace(monotonic=fake))
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


class Reads:
    """A database read the test ends: how many began, each answered by `answer`."""

    def __init__(self) -> None:
        self.answers: list[asyncio.Future[ApiKey]] = []

    @property
    def began(self) -> int:
        return len(self.answers)

    @property
    def answer(self) -> "asyncio.Future[ApiKey] | None":
        return self.answers[-1] if self.answers else None

    async def __call__(self) -> ApiKey:
        self.answers.append(asyncio.get_running_loop().create_future())
        return await self.answers[-1]

    async def until_began(self, count: int) -> None:
        """Until `count` reads have begun; each turn runs every caller that is ready, so one
        more read than this, begun alongside, would have begun too."""

        async def began() -> bool:
            return self.began >= count

        await eventually(began, timeout_s=5, interval_s=0, what=f"{count} reads begun")


@pytest.mark.usefixtures("clock")
async def test_misses_of_one_token_share_one_read() -> None:
    cache, key, reads = KeyCache(ttl_s=5), ApiKey(prefix="abc", scopes=["read"]), Reads()
    callers = [asyncio.ensure_future(cache.load("cf_abc_secret", reads)) for _ in range(8)]
    await reads.until_began(1)
    assert reads.began == 1
    assert reads.answer is not None
    reads.answer.set_result(key)
    assert await asyncio.gather(*callers) == [key] * 8
    assert cache.get("cf_abc_secret") is key  # remembered from when the read began
    other = asyncio.ensure_future(cache.load("cf_abc_other", reads))
    await reads.until_began(2)
    assert reads.began == 2  # another token reads on its own
    reads.answer.set_exception(LookupError("invalid"))
    with pytest.raises(LookupError):
        await other


async def test_a_read_begun_a_ttl_ago_is_not_shared(clock: Clock) -> None:
    """Its answer may predate a revocation: a request that late reads again, as it would
    find no entry from that read."""
    cache, reads = KeyCache(ttl_s=5), Reads()
    slow = asyncio.ensure_future(cache.load("cf_abc_secret", reads))
    await reads.until_began(1)
    first = reads.answer
    clock.now += 5.0
    late = asyncio.ensure_future(cache.load("cf_abc_secret", reads))
    await reads.until_began(2)
    assert reads.began == 2
    again = reads.answer
    assert first is not None
    assert again is not None
    assert again is not first
    revoked = ApiKey(prefix="abc", scopes=[])
    again.set_result(revoked)
    first.set_result(ApiKey(prefix="abc", scopes=["read"]))
    assert await late is revoked
    await slow


@pytest.mark.usefixtures("clock")
async def test_a_caller_that_goes_does_not_end_the_read_of_the_others() -> None:
    cache, key, reads = KeyCache(ttl_s=5), ApiKey(prefix="abc", scopes=["read"]), Reads()
    gone, kept = (asyncio.ensure_future(cache.load("cf_abc_secret", reads)) for _ in range(2))
    await reads.until_began(1)
    gone.cancel()
    await asyncio.wait([gone])  # its cancellation has run
    answer = reads.answer
    assert answer is not None
    assert not answer.cancelled()
    answer.set_result(key)
    assert await kept is key
    assert reads.began == 1


@pytest.mark.usefixtures("clock")
async def test_without_a_cache_each_miss_reads() -> None:
    cache, reads = KeyCache(ttl_s=0), Reads()
    callers = [asyncio.ensure_future(cache.load("cf_abc_secret", reads)) for _ in range(3)]
    await reads.until_began(3)
    assert reads.began == 3
    key = ApiKey(prefix="abc", scopes=["read"])
    for answer in reads.answers:
        answer.set_result(key)
    assert await asyncio.gather(*callers) == [key] * 3
    assert cache.get("cf_abc_secret") is None
