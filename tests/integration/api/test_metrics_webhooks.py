"""The webhook gauges of GET /metrics (issue 18): backlog, oldest pending and enabled per
endpoint, read from the database by the API's collector; on both databases."""

from prometheus_client.parser import text_string_to_metric_families

from chainflow.api.app import create_app
from chainflow.core.settings import Settings
from tests.support.fixtures import ApiHarness, open_api


class TestWebhookGauges:
    async def test_backlog_oldest_pending_and_enabled_follow_the_database(
        self, settings: Settings
    ) -> None:
        fresh = settings.model_copy(update={"metrics_cache_s": 0.0})  # read at every scrape
        async with open_api(create_app(fresh)) as api:
            headers = await api.key("webhooks")
            created = await api.client.post(
                "/v1/webhooks", headers=headers, json={"url": "http://127.0.0.1:9/hook"}
            )
            webhook_id = created.json()["id"]
            empty = await scrape(api)
            assert empty[("chainflow_webhook_backlog", webhook_id)] == 0
            assert empty[("chainflow_webhook_oldest_pending_seconds", webhook_id)] == 0
            assert empty[("chainflow_webhook_endpoint_enabled", webhook_id)] == 1
            for _ in range(2):  # no worker runs: they stay pending
                await api.client.post(f"/v1/webhooks/{webhook_id}/test", headers=headers)
            queued = await scrape(api)
            assert queued[("chainflow_webhook_backlog", webhook_id)] == 2
            age = queued[("chainflow_webhook_oldest_pending_seconds", webhook_id)]
            assert age > 0
            assert (await scrape(api))[
                ("chainflow_webhook_oldest_pending_seconds", webhook_id)
            ] > age
            await api.client.patch(
                f"/v1/webhooks/{webhook_id}", headers=headers, json={"enabled": False}
            )
            disabled = await scrape(api)
        assert disabled[("chainflow_webhook_endpoint_enabled", webhook_id)] == 0
        assert ("chainflow_webhook_backlog", webhook_id) not in disabled  # nothing is sent


async def scrape(api: ApiHarness) -> dict[tuple[str, str], float]:
    """The webhook gauges of one scrape, by (name, webhook id)."""
    text = (await api.client.get("/metrics")).text
    return {
        (sample.name, sample.labels["webhook_id"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("chainflow_webhook_") and "webhook_id" in sample.labels
    }
