"""Transaction routes over HTTP on both databases: submit, idempotency, refusals, list, cancel."""

import asyncio
from typing import Any

import pytest

from chainflow.domain.chains.models import Chain
from chainflow.infra.db.uow import unit_of_work
from tests.support.engine import SINK
from tests.support.fixtures import ApiHarness, prepare_sender
from tests.support.fixtures import tx_body as body


@pytest.fixture
async def setup(api: ApiHarness, anvil_url: str) -> dict[str, Any]:
    return await prepare_sender(api, anvil_url)


class TestSubmit:
    async def test_transfer_is_queued_with_its_event(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        response = await api.client.post(
            "/v1/transactions", headers=setup["write"], json=body(setup, value="5")
        )
        assert response.status_code == 202, response.text
        tx = response.json()
        assert (tx["status"], tx["value"], tx["nonce"], tx["from"]) == (
            "queued",
            "5",
            None,
            setup["wallet"]["address"],
        )
        assert [e["to_status"] for e in tx["events"]] == ["queued"]
        fetched = await api.client.get(f"/v1/transactions/{tx['id']}", headers=setup["write"])
        assert fetched.json() == tx  # the view built at submit time is what was stored

    async def test_function_and_args_are_abi_encoded(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        call = body(setup, function="transfer(address,uint256)", args=[SINK, "1000"])
        response = await api.client.post("/v1/transactions", headers=setup["write"], json=call)
        assert response.status_code == 202, response.text
        assert response.json()["data"] == (
            "0xa9059cbb" + SINK[2:].lower().rjust(64, "0") + hex(1000)[2:].rjust(64, "0")
        )

    @pytest.mark.parametrize(
        ("extra", "code"),
        [
            (
                {"function": "transfer(address,uint256)", "args": ["0x12", 1]},
                "invalid_function_call",
            ),
            ({"function": "nonsense", "args": []}, "invalid_function_call"),
            ({"data": "0xabc"}, "validation_error"),
            ({"data": "0x00", "function": "f()"}, "validation_error"),
            ({"value": "-1"}, "validation_error"),
            ({"to": "0x1234"}, "validation_error"),
            ({"surprise": 1}, "validation_error"),
            ({"valid_until": "2030-01-01T00:00:00"}, "validation_error"),
            ({"chain_id": 999}, "unknown_chain"),
            ({"wallet": "0x" + "11" * 20}, "unknown_wallet"),
            ({"max_fee_per_gas": str(10**15)}, "fee_above_chain_cap"),
            # issue 14: a cap that can never pay, or that every node refuses
            ({"max_fee_per_gas": "0"}, "fee_cap_zero"),
            ({"max_fee_per_gas": "0", "max_priority_fee_per_gas": "0"}, "fee_cap_zero"),
            ({"max_fee_per_gas": "9", "max_priority_fee_per_gas": "10"}, "fee_cap_below_tip"),
        ],
    )
    async def test_bad_requests_are_precise_problems_and_store_nothing(
        self, api: ApiHarness, setup: dict[str, Any], extra: dict[str, Any], code: str
    ) -> None:
        async with unit_of_work(api.resources.sessionmaker) as session:
            chain = await session.get_one(Chain, 31337)
            chain.max_fee_per_gas_cap = 10**12
        response = await api.client.post(
            "/v1/transactions", headers=setup["write"], json=body(setup, **extra)
        )
        assert response.status_code in (404, 409, 422), response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == code
        listed = await api.client.get("/v1/transactions", headers=setup["write"])
        assert listed.json()["items"] == []

    @pytest.mark.parametrize(
        ("change", "code"),
        [
            ("pause_wallet", "wallet_not_active"),
            ("disable_lane", "wallet_chain_disabled"),
            ("disable_chain", "chain_disabled"),
        ],
    )
    async def test_refused_when_wallet_lane_or_chain_cannot_send(
        self, api: ApiHarness, setup: dict[str, Any], change: str, code: str
    ) -> None:
        wallet_path = f"/v1/wallets/{setup['wallet']['id']}"
        if change == "pause_wallet":
            await api.client.patch(wallet_path, headers=setup["wallets"], json={"status": "paused"})
        elif change == "disable_lane":
            await api.client.delete(f"{wallet_path}/chains/31337", headers=setup["wallets"])
        else:
            await api.client.patch(
                "/v1/chains/31337", headers=await api.key("admin"), json={"enabled": False}
            )
        response = await api.client.post(
            "/v1/transactions", headers=setup["write"], json=body(setup)
        )
        assert (response.status_code, response.json()["code"]) == (409, code)

    async def test_read_key_cannot_submit(self, api: ApiHarness, setup: dict[str, Any]) -> None:
        response = await api.client.post(
            "/v1/transactions", headers=await api.key("read"), json=body(setup)
        )
        assert response.status_code == 403


class TestIdempotency:
    async def test_same_key_and_body_return_the_same_transaction(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        headers = setup["write"] | {"Idempotency-Key": "order-1"}
        first = await api.client.post("/v1/transactions", headers=headers, json=body(setup))
        again = await api.client.post("/v1/transactions", headers=headers, json=body(setup))
        assert first.status_code == again.status_code == 202
        assert first.json() == again.json()
        assert again.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers

    async def test_same_key_with_another_body_is_409(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        headers = setup["write"] | {"Idempotency-Key": "order-2"}
        await api.client.post("/v1/transactions", headers=headers, json=body(setup, value="1"))
        other = await api.client.post(
            "/v1/transactions", headers=headers, json=body(setup, value="2")
        )
        assert (other.status_code, other.json()["code"]) == (409, "idempotency_key_reused")

    async def test_concurrent_duplicates_create_one_row(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        headers = setup["write"] | {"Idempotency-Key": "order-3"}
        responses = await asyncio.gather(
            *(
                api.client.post("/v1/transactions", headers=headers, json=body(setup))
                for _ in range(8)
            )
        )
        assert {r.status_code for r in responses} == {202}
        assert len({r.json()["id"] for r in responses}) == 1
        listed = await api.client.get("/v1/transactions", headers=setup["write"])
        assert len(listed.json()["items"]) == 1


class TestListAndCancel:
    async def test_filters_and_pages(self, api: ApiHarness, setup: dict[str, Any]) -> None:
        ids = []
        for i in range(5):
            response = await api.client.post(
                "/v1/transactions", headers=setup["write"], json=body(setup, value=str(i))
            )
            ids.append(response.json()["id"])
        await api.client.post(f"/v1/transactions/{ids[0]}/cancel", headers=setup["write"])
        seen: list[str] = []
        url = "/v1/transactions?limit=2&status=queued&chain_id=31337"
        page = (await api.client.get(url, headers=setup["write"])).json()
        seen += [item["id"] for item in page["items"]]
        while page["next_cursor"]:
            page = (
                await api.client.get(f"{url}&cursor={page['next_cursor']}", headers=setup["write"])
            ).json()
            seen += [item["id"] for item in page["items"]]
        assert seen == ids[1:]
        by_wallet = await api.client.get(
            f"/v1/transactions?wallet={setup['wallet']['id']}&status=cancelled",
            headers=setup["write"],
        )
        assert [item["id"] for item in by_wallet.json()["items"]] == [ids[0]]

    async def test_cancel_queued_then_cancel_again_is_409(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        created = await api.client.post(
            "/v1/transactions", headers=setup["write"], json=body(setup)
        )
        path = f"/v1/transactions/{created.json()['id']}/cancel"
        cancelled = await api.client.post(path, headers=setup["write"])
        assert cancelled.json()["status"] == "cancelled"
        again = await api.client.post(path, headers=setup["write"])
        assert (again.status_code, again.json()["code"]) == (409, "transaction_final")

    async def test_unknown_transaction_is_404(self, api: ApiHarness, setup: dict[str, Any]) -> None:
        response = await api.client.get(
            "/v1/transactions/6f1c3a8e-2b9d-4d1e-9a7c-0e5b8f3d2a11", headers=setup["write"]
        )
        assert (response.status_code, response.json()["code"]) == (404, "transaction_not_found")


class TestBatch:
    async def test_items_are_queued_in_order_and_read_back_the_same(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        items = [body(setup, value=str(i + 1)) for i in range(3)]
        response = await api.client.post(
            "/v1/transactions/batch", headers=setup["write"], json={"transactions": items}
        )
        assert response.status_code == 202, response.text
        stored = response.json()["items"]
        assert [(tx["value"], tx["status"]) for tx in stored] == [
            ("1", "queued"),
            ("2", "queued"),
            ("3", "queued"),
        ]
        for tx in stored:
            fetched = await api.client.get(f"/v1/transactions/{tx['id']}", headers=setup["write"])
            assert fetched.json() == tx

    @pytest.mark.parametrize(
        ("bad_item", "status", "code"),
        [
            ({"wallet": "0x" + "12" * 20}, 422, "unknown_wallet"),
            ({"chain_id": 999}, 422, "unknown_chain"),
            ({"function": "transfer(address)", "args": ["nope"]}, 422, "invalid_function_call"),
            # the same wallet and chain as item 0, so checked against a target read once
            ({"max_fee_per_gas": str(10**15)}, 422, "fee_above_chain_cap"),
            ({"max_fee_per_gas": "0"}, 422, "fee_cap_zero"),
            ({"max_fee_per_gas": "9", "max_priority_fee_per_gas": "10"}, 422, "fee_cap_below_tip"),
        ],
    )
    async def test_one_bad_item_fails_the_batch_naming_it_and_stores_nothing(
        self,
        api: ApiHarness,
        setup: dict[str, Any],
        bad_item: dict[str, Any],
        status: int,
        code: str,
    ) -> None:
        async with unit_of_work(api.resources.sessionmaker) as session:
            chain = await session.get_one(Chain, 31337)
            chain.max_fee_per_gas_cap = 10**12
        items = [body(setup), body(setup, **bad_item), body(setup)]
        response = await api.client.post(
            "/v1/transactions/batch", headers=setup["write"], json={"transactions": items}
        )
        assert response.status_code == status, response.text
        problem = response.json()
        assert response.headers["content-type"] == "application/problem+json"
        assert (problem["code"], problem["index"]) == (code, 1)
        assert problem["detail"].startswith("transactions[1]: ")
        listed = await api.client.get("/v1/transactions", headers=setup["write"])
        assert listed.json()["items"] == []

    @pytest.mark.parametrize("count", [0, 501])
    async def test_empty_or_oversized_batches_are_422(
        self, api: ApiHarness, setup: dict[str, Any], count: int
    ) -> None:
        response = await api.client.post(
            "/v1/transactions/batch",
            headers=setup["write"],
            json={"transactions": [body(setup)] * count},
        )
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"

    async def test_same_key_and_items_replay_another_batch_is_409(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        headers = setup["write"] | {"Idempotency-Key": "payroll-7"}
        items = {"transactions": [body(setup, value="1"), body(setup, value="2")]}
        first = await api.client.post("/v1/transactions/batch", headers=headers, json=items)
        again = await api.client.post("/v1/transactions/batch", headers=headers, json=items)
        assert first.status_code == again.status_code == 202
        assert first.json() == again.json()
        assert again.headers["idempotent-replayed"] == "true"
        other = {"transactions": [body(setup, value="1"), body(setup, value="3")]}
        conflict = await api.client.post("/v1/transactions/batch", headers=headers, json=other)
        shorter = {"transactions": [body(setup, value="1")]}
        short = await api.client.post("/v1/transactions/batch", headers=headers, json=shorter)
        assert [conflict.status_code, short.status_code] == [409, 409]
        listed = await api.client.get("/v1/transactions", headers=setup["write"])
        assert len(listed.json()["items"]) == 2

    async def test_concurrent_duplicate_batches_store_one(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        headers = setup["write"] | {"Idempotency-Key": "race"}
        items = {"transactions": [body(setup, value=str(i + 1)) for i in range(5)]}
        answers = await asyncio.gather(
            *(
                api.client.post("/v1/transactions/batch", headers=headers, json=items)
                for _ in range(4)
            )
        )
        assert {a.status_code for a in answers} == {202}
        assert len({tuple(tx["id"] for tx in a.json()["items"]) for a in answers}) == 1
        listed = await api.client.get("/v1/transactions", headers=setup["write"])
        assert len(listed.json()["items"]) == 5
