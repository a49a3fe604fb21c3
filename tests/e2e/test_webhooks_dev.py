"""`chainflow dev` delivers webhooks from its embedded engine, to a receiver on localhost
(it allows private webhook URLs, and says so in its log)."""

from pathlib import Path

import pytest

from chainflow.domain.transactions.state import TxStatus
from tests.chaos.cluster import open_cluster
from tests.chaos.test_webhook_kills import add_endpoint, event_ids
from tests.support.polling import eventually
from tests.support.receiver import receiver


@pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)
async def test_dev_delivers_to_a_localhost_receiver(
    database_url: str, anvil_url: str, tmp_path: Path
) -> None:
    async with (
        receiver() as hook,
        open_cluster(tmp_path, database_url, anvil_url, embedded=True, wallets=1) as cluster,
    ):
        secret = await add_endpoint(cluster, hook.url)
        await cluster.submit(3)
        await cluster.settle(timeout_s=60)
        assert await cluster.count(TxStatus.CONFIRMED) == 3
        expected = await event_ids(cluster)

        async def delivered() -> bool:
            return {r.msg_id for r in hook.accepted()} >= expected

        await eventually(delivered, timeout_s=60, interval_s=0.1)
        assert all(r.verifies_with(secret) for r in hook.received)
        [dev] = cluster.alive("dev")
        assert "webhooks.private_urls_allowed" in cluster.log_of(dev)
