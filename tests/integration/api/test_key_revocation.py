"""A revoked API key stops working on a running API within CHAINFLOW_API_KEY_CACHE_S
(at once with 0), through the real app on both databases."""

import time
from collections.abc import AsyncIterator

import pytest

from chainflow.api.app import create_app
from chainflow.core.settings import Settings
from chainflow.domain.apikeys import service
from chainflow.infra.db.uow import unit_of_work
from tests.support.fixtures import ApiHarness, open_api
from tests.support.polling import eventually


async def _harness(settings: Settings, cache_s: float) -> AsyncIterator[ApiHarness]:
    app = create_app(settings.model_copy(update={"api_key_cache_s": cache_s}))
    async with open_api(app) as harness:
        yield harness


@pytest.fixture
async def uncached(settings: Settings) -> AsyncIterator[ApiHarness]:
    async for harness in _harness(settings, 0):
        yield harness


@pytest.fixture
async def cached(settings: Settings) -> AsyncIterator[ApiHarness]:
    async for harness in _harness(settings, CACHE_S):
        yield harness


CACHE_S = 1.0


async def _key_and_revoke(api: ApiHarness) -> tuple[dict[str, str], float]:
    """A read key used once (so a cache would hold it), then revoked; when the revoke
    committed (monotonic)."""
    async with unit_of_work(api.resources.sessionmaker) as session:
        row, token = await service.create_api_key(session, ["read"])
    headers = {"Authorization": f"Bearer {token}"}
    assert (await api.client.get("/v1/chains", headers=headers)).status_code == 200
    async with unit_of_work(api.resources.sessionmaker) as session:
        await service.revoke_api_key(session, row.id)
    return headers, time.monotonic()


class TestRevocation:
    async def test_without_a_cache_the_next_request_is_refused(self, uncached: ApiHarness) -> None:
        headers, _ = await _key_and_revoke(uncached)
        response = await uncached.client.get("/v1/chains", headers=headers)
        assert response.status_code == 401
        assert response.json()["code"] == "invalid_api_key"

    async def test_with_a_cache_it_is_refused_within_the_cache_time(
        self, cached: ApiHarness
    ) -> None:
        headers, revoked_at = await _key_and_revoke(cached)

        async def refused() -> bool:
            response = await cached.client.get("/v1/chains", headers=headers)
            return response.status_code == 401

        await eventually(refused, timeout_s=CACHE_S + 2, interval_s=0.02)
        # The bound, with room for one poll interval and one request on a busy machine.
        assert time.monotonic() - revoked_at <= CACHE_S + 0.5
        other = await cached.key("read")  # other keys are unaffected
        assert (await cached.client.get("/v1/chains", headers=other)).status_code == 200
