"""Liveness, readiness (database and real Redis) and the OpenAPI document."""

import pytest

from chainflow.api.app import create_app
from chainflow.core.settings import Settings
from tests.support.databases import REDIS_URL
from tests.support.fixtures import ApiHarness, open_api


class TestHealth:
    async def test_healthz(self, api: ApiHarness) -> None:
        response = await api.client.get("/healthz")
        assert response.json() == {"status": "ok"}

    async def test_readyz_checks_the_database(self, api: ApiHarness) -> None:
        response = await api.client.get("/readyz")
        assert response.status_code == 200
        assert response.json()["checks"] == {"database": "ok"}

    @pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
    async def test_readyz_checks_redis_when_configured(self, settings: Settings) -> None:
        distributed = settings.model_copy(update={"redis_url": REDIS_URL})
        async with open_api(create_app(distributed)) as harness:
            response = await harness.client.get("/readyz")
        assert response.json()["checks"] == {"database": "ok", "redis": "ok"}

    @pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
    async def test_readyz_is_503_when_redis_is_unreachable(self, settings: Settings) -> None:
        broken = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
        async with open_api(create_app(broken)) as harness:
            response = await harness.client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"]["redis"].startswith("error")

    @pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
    async def test_database_connections_are_open_before_the_first_request(
        self, settings: Settings
    ) -> None:
        app = create_app(settings)
        async with open_api(app):
            pool = app.state.resources.engine.pool
            assert pool.checkedin() == 10  # warmed, idle, none opened by a request yet

    async def test_request_id_is_echoed_or_made(self, api: ApiHarness) -> None:
        given = await api.client.get("/healthz", headers={"X-Request-ID": "abc-123"})
        made = await api.client.get("/healthz")
        assert given.headers["x-request-id"] == "abc-123"
        assert len(made.headers["x-request-id"]) == 32


class TestOpenApi:
    async def test_every_v1_operation_documents_problems_and_examples(
        self, api: ApiHarness
    ) -> None:
        document = (await api.client.get("/openapi.json")).json()
        for path, operations in document["paths"].items():
            if not path.startswith("/v1/"):
                continue
            for method, operation in operations.items():
                assert operation.get("summary"), (method, path)
                assert {"401", "403"} <= set(operation["responses"]), (method, path)
        schemas = document["components"]["schemas"]
        for name in ("ChainCreate", "ChainRead", "WalletCreate", "WalletRead", "LaneRead"):
            assert schemas[name].get("examples"), name
