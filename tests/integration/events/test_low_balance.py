"""wallet.low_balance from the tracker's own balance readings: set over HTTP, fired once per
crossing below the threshold, re-armed above it; on both databases, on anvil."""

from sqlalchemy import select

from chainflow.domain.events import EventRow
from chainflow.domain.transactions import readings
from chainflow.domain.wallets.models import Wallet
from chainflow.workers.main import run_round
from tests.support.chains import ANVIL_CHAIN_ID
from tests.support.engine import EngineHarness
from tests.support.fixtures import ApiHarness

THRESHOLD = 5 * 10**20


async def fired(harness: EngineHarness, wallet: Wallet) -> list[dict[str, object]]:
    async with harness.sessionmaker() as session:
        rows = await session.scalars(
            select(EventRow)
            .where(EventRow.type == "wallet.low_balance", EventRow.wallet_id == wallet.id)
            .order_by(EventRow.id)
        )
        return [row.data for row in rows]


async def read_with_balance(harness: EngineHarness, wallet: Wallet, balance_wei: int) -> None:
    """Set the balance on anvil, then run a round whose tracker reads the chain."""
    await harness.rpc.call("anvil_setBalance", [wallet.address, hex(balance_wei)])
    readings.forget_chain(ANVIL_CHAIN_ID)  # due now, not in 5 s
    await run_round(harness.engine, ANVIL_CHAIN_ID)


class TestLowBalance:
    async def test_fires_once_per_crossing_below_the_threshold(
        self, harness: EngineHarness, api: ApiHarness
    ) -> None:
        wallet = await harness.wallet(balance_wei=10**21)
        keys = await api.key("wallets")
        lane_url = f"/v1/wallets/{wallet.id}/chains/{ANVIL_CHAIN_ID}"
        response = await api.client.put(
            lane_url, headers=keys, json={"low_balance_wei": str(THRESHOLD)}
        )
        assert response.status_code == 200, response.text
        lane = await api.client.get(lane_url, headers=keys)
        assert lane.json()["low_balance_wei"] == str(THRESHOLD)

        await read_with_balance(harness, wallet, 10**21)
        assert await fired(harness, wallet) == []
        await read_with_balance(harness, wallet, 10**20)
        (event,) = await fired(harness, wallet)
        assert event == {
            "wallet_id": str(wallet.id),
            "address": wallet.address,
            "chain_id": ANVIL_CHAIN_ID,
            "balance_wei": str(10**20),
            "low_balance_wei": str(THRESHOLD),
        }
        await read_with_balance(harness, wallet, 10**20 - 1)  # still below: no new event
        assert len(await fired(harness, wallet)) == 1
        await read_with_balance(harness, wallet, THRESHOLD)  # at the threshold: re-armed
        assert len(await fired(harness, wallet)) == 1
        await read_with_balance(harness, wallet, THRESHOLD - 1)
        assert [e["balance_wei"] for e in await fired(harness, wallet)] == [
            str(10**20),
            str(THRESHOLD - 1),
        ]

    async def test_null_turns_it_off_and_a_bad_threshold_is_refused(
        self, harness: EngineHarness, api: ApiHarness
    ) -> None:
        wallet = await harness.wallet(balance_wei=10**18)
        keys = await api.key("wallets")
        lane_url = f"/v1/wallets/{wallet.id}/chains/{ANVIL_CHAIN_ID}"
        for bad in ("-1", "0x10", "1" * 80, True):
            refused = await api.client.put(lane_url, headers=keys, json={"low_balance_wei": bad})
            assert refused.status_code == 422, (bad, refused.text)
        on = await api.client.put(lane_url, headers=keys, json={"low_balance_wei": str(THRESHOLD)})
        assert on.status_code == 200
        off = await api.client.put(lane_url, headers=keys, json={"low_balance_wei": None})
        assert off.status_code == 200
        lane = await api.client.get(lane_url, headers=keys)
        assert lane.json()["low_balance_wei"] is None
        await read_with_balance(harness, wallet, 10**18)
        assert await fired(harness, wallet) == []
        plain = await api.client.put(lane_url, headers=keys)  # no body: only enables
        assert plain.status_code == 200
