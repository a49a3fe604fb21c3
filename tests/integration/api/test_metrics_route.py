"""GET /metrics on the API (issue 18): open or behind a Bearer token, lanes read from the
database, requests labelled by route template, and nothing when metrics are turned off."""

import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from chainflow.api.app import create_app
from chainflow.core.settings import Settings
from tests.support.fixtures import ApiHarness, open_api

pytestmark = pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)


def samples(text: str, name: str) -> list[dict[str, str]]:
    return [
        dict(sample.labels)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


class TestMetricsRoute:
    async def test_a_request_is_counted_by_its_route_template(self, api: ApiHarness) -> None:
        tx_id = str(uuid.uuid4())
        response = await api.client.get(f"/v1/transactions/{tx_id}", headers=await api.key("read"))
        assert response.status_code == 404
        text = (await api.client.get("/metrics")).text
        routes = {labels["route"] for labels in samples(text, "chainflow_api_requests_total")}
        assert "/v1/transactions/{tx_id}" in routes
        assert tx_id not in text

    async def test_a_set_token_is_required_as_bearer(self, settings: Settings) -> None:
        guarded = settings.model_copy(update={"metrics_token": SecretStr("s3cret-metrics")})
        async with open_api(create_app(guarded)) as harness:
            refused = await harness.client.get("/metrics")
            wrong = await harness.client.get("/metrics", headers={"Authorization": "Bearer x"})
            allowed = await harness.client.get(
                "/metrics", headers={"Authorization": "Bearer s3cret-metrics"}
            )
        assert (refused.status_code, wrong.status_code) == (401, 401)
        assert refused.json()["code"] == "invalid_metrics_token"
        assert allowed.status_code == 200
        assert "chainflow_db_pool_in_use" in allowed.text

    async def test_turned_off_there_is_no_scrape(self, settings: Settings) -> None:
        off = settings.model_copy(update={"metrics_enabled": False})
        async with open_api(create_app(off)) as harness:
            response = await harness.client.get("/metrics")
        assert response.status_code == 404
