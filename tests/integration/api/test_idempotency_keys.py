"""Idempotency keys over HTTP on both databases: single and batch keys live in separate
namespaces, and an empty, overlong or oddly spelled key is refused before anything is stored."""

from typing import Any

import pytest

from chainflow.infra.db.uow import unit_of_work
from tests.support.chains import add_anvil_chain
from tests.support.fixtures import ApiHarness

SINK = "0x000000000000000000000000000000000000dEaD"
KEY_MAX = 250  # the documented limit of an Idempotency-Key


@pytest.fixture
async def setup(api: ApiHarness, anvil_url: str) -> dict[str, Any]:
    async with unit_of_work(api.resources.sessionmaker) as session:
        await add_anvil_chain(session, anvil_url)
    admin = await api.key("admin")
    created = await api.client.post(
        "/v1/wallets", headers=admin, json={"generate": True, "chain_ids": [31337]}
    )
    transfer = {"chain_id": 31337, "wallet": created.json()["address"], "to": SINK}
    return {"headers": admin, "transfer": transfer}


async def single(api: ApiHarness, setup: dict[str, Any], key: str | bytes) -> Any:
    headers = setup["headers"] | {"Idempotency-Key": key}
    return await api.client.post("/v1/transactions", headers=headers, json=setup["transfer"])


async def batch(api: ApiHarness, setup: dict[str, Any], key: str | bytes, size: int = 1) -> Any:
    headers = setup["headers"] | {"Idempotency-Key": key}
    body = {"transactions": [setup["transfer"]] * size}
    return await api.client.post("/v1/transactions/batch", headers=headers, json=body)


async def stored(api: ApiHarness, setup: dict[str, Any]) -> int:
    listed = await api.client.get("/v1/transactions", headers=setup["headers"])
    return len(listed.json()["items"])


class TestNamespaces:
    async def test_a_single_key_cannot_take_a_batch_items_place(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        refused = await single(api, setup, "K#0")  # what item 0 of batch "K" is stored under
        assert (refused.status_code, refused.json()["code"]) == (422, "invalid_idempotency_key")
        created = await batch(api, setup, "K")
        assert created.status_code == 202, created.text
        assert "Idempotent-Replayed" not in created.headers
        assert await stored(api, setup) == 1

    @pytest.mark.parametrize("single_first", [True, False])
    async def test_the_same_key_for_a_single_and_a_batch_stores_both(
        self, api: ApiHarness, setup: dict[str, Any], single_first: bool
    ) -> None:
        calls = [single(api, setup, "order-9"), batch(api, setup, "order-9", size=2)]
        first, second = [await call for call in (calls if single_first else calls[::-1])]
        assert (first.status_code, second.status_code) == (202, 202), second.text
        assert "Idempotent-Replayed" not in second.headers
        assert await stored(api, setup) == 3
        again = await single(api, setup, "order-9")
        assert again.headers.get("Idempotent-Replayed") == "true"
        replayed = await batch(api, setup, "order-9", size=2)
        assert replayed.headers.get("Idempotent-Replayed") == "true"
        assert await stored(api, setup) == 3


class TestKeyRules:
    @pytest.mark.parametrize(
        "key",
        ["", " ", "a b", "tab\tkey", "caf\u00e9".encode(), "K#1", "#", "x" * (KEY_MAX + 1)],
        ids=["empty", "space", "inner-space", "tab", "utf-8", "hash", "only-hash", "long"],
    )
    async def test_a_bad_key_is_refused_for_single_and_batch(
        self, api: ApiHarness, setup: dict[str, Any], key: str | bytes
    ) -> None:
        for send in (single, batch):
            response = await send(api, setup, key)
            assert (response.status_code, response.json()["code"]) == (
                422,
                "invalid_idempotency_key",
            ), response.text
        assert await stored(api, setup) == 0

    @pytest.mark.parametrize(
        "key",
        [
            "x" * KEY_MAX,
            "8e03978e-40d5-43e8-bc93-6894a57f9324",
            '"quoted"',
            "a+b/c=d_e.f~g:h@i!j",
        ],
    )
    async def test_printable_keys_up_to_the_limit_work_for_single_and_batch(
        self, api: ApiHarness, setup: dict[str, Any], key: str
    ) -> None:
        assert (await single(api, setup, key)).status_code == 202
        assert (await batch(api, setup, key, size=3)).status_code == 202
        assert (await single(api, setup, key)).headers.get("Idempotent-Replayed") == "true"
        assert await stored(api, setup) == 4
