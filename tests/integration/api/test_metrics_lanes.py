"""The paused-lane gauge of GET /metrics: how many enabled lanes of each chain show each
paused_reason (a lane below a nonce gap waits for an operator), read with the lane gauges;
on both databases."""

import uuid

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from chainflow.api.app import create_app
from chainflow.core.settings import Settings
from chainflow.domain.wallets.models import WalletChain
from chainflow.infra.db.uow import unit_of_work
from tests.support.chains import ANVIL_CHAIN_ID, add_anvil_chain
from tests.support.fixtures import ApiHarness, open_api

CHAIN = str(ANVIL_CHAIN_ID)


class TestPausedLanesGauge:
    async def test_lanes_are_counted_per_chain_and_reason(
        self, settings: Settings, anvil_url: str
    ) -> None:
        fresh = settings.model_copy(update={"metrics_cache_s": 0.0})  # read at every scrape
        async with open_api(create_app(fresh)) as api:
            async with unit_of_work(api.resources.sessionmaker) as session:
                await add_anvil_chain(session, anvil_url)
            headers = await api.key("wallets")
            ids = []
            for _ in range(3):
                created = await api.client.post(
                    "/v1/wallets",
                    headers=headers,
                    json={"generate": True, "chain_ids": [ANVIL_CHAIN_ID]},
                )
                ids.append(uuid.UUID(created.json()["id"]))
            none = await scrape(api)
            assert none[(CHAIN, "nonce_gap")] == 0
            assert none[(CHAIN, "key_unreadable")] == 0
            # No worker runs here: show the reasons as the tracker and a drain would.
            for wallet_id, reason in zip(
                ids, ["nonce_gap", "nonce_gap", "key_unreadable"], strict=True
            ):
                await show(api, wallet_id, reason)
            shown = await scrape(api)
            assert shown[(CHAIN, "nonce_gap")] == 2
            assert shown[(CHAIN, "key_unreadable")] == 1
            assert shown[(CHAIN, "signer_unavailable")] == 0
            await show(api, ids[0], None)
            assert (await scrape(api))[(CHAIN, "nonce_gap")] == 1


async def show(api: ApiHarness, wallet_id: uuid.UUID, reason: str | None) -> None:
    async with unit_of_work(api.resources.sessionmaker) as session:
        await session.execute(
            update(WalletChain)
            .where(WalletChain.wallet_id == wallet_id)
            .values(paused_reason=reason)
        )


async def scrape(api: ApiHarness) -> dict[tuple[str, str], float]:
    """chainflow_lanes_paused of one scrape, by (chain id, reason)."""
    text = (await api.client.get("/metrics")).text
    return {
        (sample.labels["chain_id"], sample.labels["reason"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "chainflow_lanes_paused"
    }
