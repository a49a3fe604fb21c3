"""Wallet routes over HTTP, on both databases: import, generate, lifecycle, lanes, bad keys."""

import uuid
from typing import Any

import pytest
from sqlalchemy import update

from chainflow.domain.transactions.models import Transaction
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.wallets.models import WalletChain
from chainflow.infra.db.uow import unit_of_work
from tests.support.chains import add_anvil_chain
from tests.support.engine import SINK
from tests.support.fixtures import ApiHarness
from tests.support.tcp_servers import json_rpc, tcp_server

KEY_HEX = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
KEY_ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


async def wallet_count(api: ApiHarness, headers: dict[str, str]) -> int:
    response = await api.client.get("/v1/wallets", headers=headers)
    return len(response.json()["items"])


class TestCreateWallet:
    async def test_import_returns_the_address_and_never_the_key(self, api: ApiHarness) -> None:
        headers = await api.key("wallets")
        response = await api.client.post(
            "/v1/wallets", headers=headers, json={"private_key": KEY_HEX, "label": "ops"}
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert (body["address"], body["status"], body["label"]) == (KEY_ADDRESS, "active", "ops")
        assert KEY_HEX[2:] not in response.text
        assert body["signer"] == {"type": "local", "key_ref": None}
        assert set(body) == {
            "id",
            "address",
            "label",
            "status",
            "signer_kind",
            "signer",
            "chain_ids",
            "created_at",
            "updated_at",
        }

    async def test_generate_with_chains(self, api: ApiHarness, anvil_url: str) -> None:
        async with unit_of_work(api.resources.sessionmaker) as session:
            await add_anvil_chain(session, anvil_url)
        response = await api.client.post(
            "/v1/wallets",
            headers=await api.key("wallets"),
            json={"generate": True, "chain_ids": [31337]},
        )
        assert response.status_code == 201, response.text
        assert response.json()["chain_ids"] == [31337]

    async def test_duplicate_import_is_409_and_stores_one_row(self, api: ApiHarness) -> None:
        headers = await api.key("wallets")
        await api.client.post("/v1/wallets", headers=headers, json={"private_key": KEY_HEX})
        again = await api.client.post(
            "/v1/wallets", headers=headers, json={"private_key": KEY_HEX[2:]}
        )
        assert (again.status_code, again.json()["code"]) == (409, "wallet_exists")
        assert await wallet_count(api, headers) == 1

    @pytest.mark.parametrize(
        ("private_key", "fragment"),
        [
            ("0xzz" + "1" * 62, "hex"),
            ("0x" + "1" * 63, "short"),
            ("0x" + "1" * 66, "long"),
            ("0x" + "0" * 64, "zero"),
            (hex(SECP256K1_N), "order"),
            ("", "empty"),
        ],
    )
    async def test_bad_key_is_422_without_echo_or_row(
        self, api: ApiHarness, private_key: str, fragment: str
    ) -> None:
        headers = await api.key("wallets")
        response = await api.client.post(
            "/v1/wallets", headers=headers, json={"private_key": private_key}
        )
        assert response.status_code == 422
        problem = response.json()
        assert problem["code"] == "invalid_private_key"
        assert fragment in problem["detail"].lower()
        if private_key:
            assert private_key.removeprefix("0x") not in response.text
        assert await wallet_count(api, headers) == 0

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"generate": True, "private_key": KEY_HEX},
            {"generate": True, "colour": "red"},
            {"generate": "yes please"},
            {"private_key": 12345},
            {"generate": True, "chain_ids": ["one"]},
        ],
    )
    async def test_malformed_body_is_422_and_never_echoes_a_key(
        self, api: ApiHarness, body: dict[str, Any]
    ) -> None:
        headers = await api.key("wallets")
        response = await api.client.post("/v1/wallets", headers=headers, json=body)
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"
        assert KEY_HEX[2:] not in response.text
        assert await wallet_count(api, headers) == 0

    async def test_unknown_chain_is_422_and_stores_nothing(self, api: ApiHarness) -> None:
        headers = await api.key("wallets")
        response = await api.client.post(
            "/v1/wallets", headers=headers, json={"generate": True, "chain_ids": [999]}
        )
        assert (response.status_code, response.json()["code"]) == (422, "unknown_chain")
        assert await wallet_count(api, headers) == 0


class TestLifecycle:
    async def test_pause_resume_disable_and_admin_reenable(self, api: ApiHarness) -> None:
        headers, admin = await api.key("wallets"), await api.key("admin")
        created = await api.client.post("/v1/wallets", headers=headers, json={"generate": True})
        path = f"/v1/wallets/{created.json()['id']}"
        for wanted in ("paused", "active", "disabled"):
            response = await api.client.patch(path, headers=headers, json={"status": wanted})
            assert response.json()["status"] == wanted
        refused = await api.client.patch(path, headers=headers, json={"status": "active"})
        assert (refused.status_code, refused.json()["code"]) == (403, "admin_required")
        invalid = await api.client.patch(path, headers=admin, json={"status": "paused"})
        assert (invalid.status_code, invalid.json()["code"]) == (409, "invalid_status_transition")
        revived = await api.client.patch(path, headers=admin, json={"status": "active"})
        assert revived.json()["status"] == "active"

    async def test_unknown_status_is_422(self, api: ApiHarness) -> None:
        headers = await api.key("wallets")
        created = await api.client.post("/v1/wallets", headers=headers, json={"generate": True})
        response = await api.client.patch(
            f"/v1/wallets/{created.json()['id']}", headers=headers, json={"status": "sleeping"}
        )
        assert response.status_code == 422


class TestLanes:
    async def test_enable_read_and_disable_a_lane(self, api: ApiHarness, anvil_url: str) -> None:
        async with unit_of_work(api.resources.sessionmaker) as session:
            await add_anvil_chain(session, anvil_url)
        headers = await api.key("wallets")
        created = await api.client.post(
            "/v1/wallets", headers=headers, json={"private_key": KEY_HEX}
        )
        path = f"/v1/wallets/{KEY_ADDRESS.lower()}/chains/31337"
        enabled = await api.client.put(path, headers=headers)
        assert enabled.json()["chain_ids"] == [31337]
        lane = (await api.client.get(path, headers=headers)).json()
        assert lane["wallet_id"] == created.json()["id"]
        assert (lane["next_nonce"], lane["in_flight"], lane["rpc_error"]) == (0, 0, None)
        assert lane["paused_reason"] is None
        assert (lane["signer_healthy"], lane["signer_error"]) == (True, None)  # a local key
        assert isinstance(lane["chain_nonce"], int)
        assert int(lane["balance_wei"]) > 0  # anvil funds its default accounts
        disabled = await api.client.delete(path, headers=headers)
        assert disabled.json()["chain_ids"] == []

    async def test_a_node_error_is_not_echoed_to_read_keys(self, api: ApiHarness) -> None:
        """A provider's error text can hold anything (its own keys, the caller's URL): a lane
        read shows the JSON-RPC code only."""
        said = "invalid project id 0123456789abcdef0123456789abcdef for https://rpc.example/KEY"
        answer: dict[str, object] = {"error": {"code": -32001, "message": said}}
        async with tcp_server(json_rpc(answer)) as node:
            async with unit_of_work(api.resources.sessionmaker) as session:
                await add_anvil_chain(session, node.url)
            headers = await api.key("wallets")
            await api.client.post("/v1/wallets", headers=headers, json={"private_key": KEY_HEX})
            path = f"/v1/wallets/{KEY_ADDRESS.lower()}/chains/31337"
            await api.client.put(path, headers=headers)
            response = await api.client.get(path, headers=await api.key("read"))
        assert response.status_code == 200, response.text
        assert response.json()["rpc_error"] == "the node answered JSON-RPC error -32001"
        assert "0123456789abcdef" not in response.text
        assert "rpc.example" not in response.text

    async def test_in_flight_counts_the_lane_s_signed_and_sent_requests(
        self, api: ApiHarness, anvil_url: str
    ) -> None:
        async with unit_of_work(api.resources.sessionmaker) as session:
            await add_anvil_chain(session, anvil_url)
        headers = await api.key("wallets", "transactions:write")
        created = await api.client.post("/v1/wallets", headers=headers, json={"generate": True})
        wallet = created.json()["id"]
        path = f"/v1/wallets/{wallet}/chains/31337"
        await api.client.put(path, headers=headers)
        ids = []
        for value in ("1", "2", "3", "4"):
            body = {"chain_id": 31337, "wallet": wallet, "to": SINK, "value": value}
            submitted = await api.client.post("/v1/transactions", headers=headers, json=body)
            ids.append(uuid.UUID(submitted.json()["id"]))
        # No worker runs here: give the rows the states a drain and the tracker would.
        statuses = [TxStatus.SIGNED, TxStatus.SUBMITTED, TxStatus.MINED, TxStatus.QUEUED]
        async with unit_of_work(api.resources.sessionmaker) as session:
            for tx_id, tx_status in zip(ids, statuses, strict=True):
                await session.execute(
                    update(Transaction).where(Transaction.id == tx_id).values(status=tx_status)
                )
        lane = (await api.client.get(path, headers=headers)).json()
        assert lane["in_flight"] == 2

    @pytest.mark.parametrize(
        "reason", ["signer_unavailable", "bad_signature", "nonce_gap", "key_unreadable"]
    )
    async def test_a_lane_waiting_for_its_signer_says_so(
        self, api: ApiHarness, anvil_url: str, reason: str
    ) -> None:
        async with unit_of_work(api.resources.sessionmaker) as session:
            await add_anvil_chain(session, anvil_url)
        headers = await api.key("wallets")
        created = await api.client.post("/v1/wallets", headers=headers, json={"generate": True})
        path = f"/v1/wallets/{created.json()['id']}/chains/31337"
        await api.client.put(path, headers=headers)
        # No worker runs here: mark the lane as a drain does when the signer is unreachable
        # (signer_unavailable) or its signature did not verify (bad_signature), or as the
        # tracker does when the chain's nonce fell below the lane's in flight (nonce_gap).
        async with unit_of_work(api.resources.sessionmaker) as session:
            await session.execute(
                update(WalletChain)
                .where(WalletChain.wallet_id == uuid.UUID(created.json()["id"]))
                .values(paused_reason=reason)
            )
        lane = (await api.client.get(path, headers=headers)).json()
        assert lane["paused_reason"] == reason
        # A local key's backend is always there; a key the engine cannot decrypt is not
        # healthy (the old code showed true beside key_unreadable).
        assert lane["signer_healthy"] is (reason != "key_unreadable")
        assert (lane["signer_error"] is None) is (reason != "key_unreadable")

    async def test_lane_on_unknown_chain_is_404(self, api: ApiHarness) -> None:
        headers = await api.key("wallets")
        created = await api.client.post("/v1/wallets", headers=headers, json={"generate": True})
        response = await api.client.put(
            f"/v1/wallets/{created.json()['id']}/chains/4242", headers=headers
        )
        assert (response.status_code, response.json()["code"]) == (404, "chain_not_found")
