"""Per-key rate limits in the embedded shape (no Redis: in-process buckets), through the real
app: reads and writes count apart, an excess is 429 problem+json with Retry-After and
RateLimit-* before the body is read, other keys are unaffected (issue 21). The distributed
shape, across two API processes sharing Redis: tests/e2e/test_rate_limits.py."""

from collections.abc import AsyncIterator

import pytest

from chainflow.api.app import create_app
from chainflow.core.settings import Settings
from chainflow.domain.apikeys.service import KeyLimits, create_api_key
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.ratelimit import LocalRateLimiter
from tests.support.fixtures import ApiHarness, open_api


@pytest.fixture
async def limited(settings: Settings) -> AsyncIterator[ApiHarness]:
    # One request per 10 s, burst 2: no refill during the test.
    tuned = settings.model_copy(update={"rate_limit_burst_s": 20.0})
    async with open_api(create_app(tuned)) as harness:
        yield harness


async def key(api: ApiHarness, rate_per_s: float | None = 0.1) -> dict[str, str]:
    async with unit_of_work(api.resources.sessionmaker) as session:
        _, token = await create_api_key(session, ["admin"], limits=KeyLimits(rate_per_s=rate_per_s))
    return {"Authorization": f"Bearer {token}"}


class TestEmbeddedLimits:
    async def test_reads_over_the_burst_are_refused_with_the_headers(
        self, limited: ApiHarness
    ) -> None:
        assert isinstance(limited.resources.limiter, LocalRateLimiter)
        headers = await key(limited)
        answers = [await limited.client.get("/v1/chains", headers=headers) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 429, 429]
        assert [a.headers["ratelimit-remaining"] for a in answers] == ["1", "0", "0", "0"]
        assert answers[0].headers["ratelimit-limit"] == "2"
        refused = await limited.client.get("/v1/me", headers=headers)
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "rate_limited"
        assert 1 <= int(refused.headers["retry-after"]) <= 10
        assert refused.headers["ratelimit-limit"] == "2"
        assert refused.headers["ratelimit-remaining"] == "0"
        assert int(refused.headers["ratelimit-reset"]) >= int(refused.headers["retry-after"])

    async def test_writes_count_apart_and_are_refused_before_the_body_is_read(
        self, limited: ApiHarness
    ) -> None:
        headers = await key(limited)
        for _ in range(3):
            await limited.client.get("/v1/chains", headers=headers)  # reads spent
        bad = {**headers, "content-type": "application/json"}
        answers = [
            await limited.client.post("/v1/transactions", headers=bad, content=b"{not json")
            for _ in range(3)
        ]
        # The first two are read (and refused as bad JSON); the third is refused unread.
        assert [a.status_code for a in answers] == [422, 422, 429]

    async def test_other_keys_and_the_defaults(self, limited: ApiHarness) -> None:
        first, second = await key(limited), await key(limited)
        for _ in range(3):
            await limited.client.get("/v1/chains", headers=first)
        assert (await limited.client.get("/v1/chains", headers=second)).status_code == 200
        default = await key(limited, rate_per_s=None)  # the settings': 1000/s
        codes = {
            (await limited.client.get("/v1/chains", headers=default)).status_code for _ in range(20)
        }
        assert codes == {200}
        me = (await limited.client.get("/v1/me", headers=default)).json()
        assert me["read_rate"] == {"per_s": 1000.0, "burst": 20000}

    async def test_unauthenticated_requests_are_not_counted_against_a_key(
        self, limited: ApiHarness
    ) -> None:
        for _ in range(5):
            assert (await limited.client.get("/v1/chains")).status_code == 401
        assert (await limited.client.get("/healthz")).status_code == 200
