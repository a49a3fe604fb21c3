"""Only the API key that submitted a transaction, or an admin key, may cancel it; every key may
still read it (issue 14). Single and batch submissions, both databases, the real app."""

import pytest

from chainflow.infra.db.uow import unit_of_work
from tests.support.chains import add_anvil_chain
from tests.support.fixtures import ApiHarness

SINK = "0x000000000000000000000000000000000000dEaD"


@pytest.fixture
async def wallet(api: ApiHarness, anvil_url: str) -> str:
    async with unit_of_work(api.resources.sessionmaker) as session:
        await add_anvil_chain(session, anvil_url)
    created = await api.client.post(
        "/v1/wallets",
        headers=await api.key("wallets"),
        json={"generate": True, "chain_ids": [31337]},
    )
    address: str = created.json()["address"]
    return address


async def _submit(api: ApiHarness, owner: dict[str, str], wallet: str, *, batch: bool) -> str:
    item = {"chain_id": 31337, "wallet": wallet, "to": SINK, "value": "1"}
    if batch:
        response = await api.client.post(
            "/v1/transactions/batch", headers=owner, json={"transactions": [item, item]}
        )
        assert response.status_code == 202, response.text
        tx_id: str = response.json()["items"][1]["id"]
        return tx_id
    response = await api.client.post("/v1/transactions", headers=owner, json=item)
    assert response.status_code == 202, response.text
    tx_id = response.json()["id"]
    return tx_id


@pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
class TestCancelOwnership:
    async def test_another_write_key_gets_403_and_nothing_changes(
        self, api: ApiHarness, wallet: str, batch: bool
    ) -> None:
        owner, other = await api.key("transactions:write"), await api.key("transactions:write")
        tx_id = await _submit(api, owner, wallet, batch=batch)
        response = await api.client.post(f"/v1/transactions/{tx_id}/cancel", headers=other)
        assert response.status_code == 403
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "transaction_owner_required"
        read = await api.client.get(f"/v1/transactions/{tx_id}", headers=other)
        assert read.status_code == 200  # still readable: every scope implies read
        assert (read.json()["status"], read.json()["cancel_requested"]) == ("queued", False)

    async def test_the_submitting_key_cancels_it(
        self, api: ApiHarness, wallet: str, batch: bool
    ) -> None:
        owner = await api.key("transactions:write")
        tx_id = await _submit(api, owner, wallet, batch=batch)
        response = await api.client.post(f"/v1/transactions/{tx_id}/cancel", headers=owner)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "cancelled"

    async def test_an_admin_key_cancels_any_keys_transaction(
        self, api: ApiHarness, wallet: str, batch: bool
    ) -> None:
        tx_id = await _submit(api, await api.key("transactions:write"), wallet, batch=batch)
        admin = await api.key("admin")
        response = await api.client.post(f"/v1/transactions/{tx_id}/cancel", headers=admin)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "cancelled"

    async def test_a_read_key_still_gets_insufficient_scope(
        self, api: ApiHarness, wallet: str, batch: bool
    ) -> None:
        tx_id = await _submit(api, await api.key("transactions:write"), wallet, batch=batch)
        response = await api.client.post(
            f"/v1/transactions/{tx_id}/cancel", headers=await api.key("read")
        )
        assert (response.status_code, response.json()["code"]) == (403, "insufficient_scope")


class TestCancelUnknown:
    async def test_unknown_transaction_is_still_404_for_any_write_key(
        self, api: ApiHarness
    ) -> None:
        response = await api.client.post(
            "/v1/transactions/00000000-0000-0000-0000-000000000007/cancel",
            headers=await api.key("transactions:write"),
        )
        assert (response.status_code, response.json()["code"]) == (404, "transaction_not_found")
