"""Chain routes over HTTP against a real anvil, on both databases."""

from typing import Any

from tests.conftest import free_port
from tests.support.fixtures import ApiHarness


def chain_body(chain_id: int, url: str, **extra: Any) -> dict[str, Any]:
    return {
        "chain_id": chain_id,
        "name": "Local",
        "native_symbol": "ETH",
        "rpc_urls": [url],
        "eip1559": True,
        "confirmations": 1,
        **extra,
    }


class TestCreateChain:
    async def test_created_chain_is_listed(self, api: ApiHarness, anvil_url: str) -> None:
        admin = await api.key("admin")
        body = chain_body(31337, anvil_url, max_fee_per_gas_cap="300000000000")
        created = await api.client.post("/v1/chains", headers=admin, json=body)
        assert created.status_code == 201, created.text
        assert created.json()["max_fee_per_gas_cap"] == "300000000000"
        listed = await api.client.get("/v1/chains", headers=admin)
        assert [c["chain_id"] for c in listed.json()["items"]] == [31337]

    async def test_wrong_chain_rpc_is_422_with_code(self, api: ApiHarness, anvil_url: str) -> None:
        admin = await api.key("admin")
        response = await api.client.post("/v1/chains", headers=admin, json=chain_body(5, anvil_url))
        assert response.status_code == 422
        assert response.json()["code"] == "rpc_chain_mismatch"
        assert (await api.client.get("/v1/chains/5", headers=admin)).status_code == 404

    async def test_unreachable_rpc_is_422_with_code(self, api: ApiHarness) -> None:
        admin = await api.key("admin")
        body = chain_body(31337, f"http://127.0.0.1:{free_port()}")
        response = await api.client.post("/v1/chains", headers=admin, json=body)
        assert (response.status_code, response.json()["code"]) == (422, "rpc_unreachable")

    async def test_duplicate_is_409(self, api: ApiHarness, anvil_url: str) -> None:
        admin = await api.key("admin")
        await api.client.post("/v1/chains", headers=admin, json=chain_body(31337, anvil_url))
        again = await api.client.post(
            "/v1/chains", headers=admin, json=chain_body(31337, anvil_url)
        )
        assert (again.status_code, again.json()["code"]) == (409, "chain_exists")

    async def test_unknown_field_and_wrong_types_are_422_problems(
        self, api: ApiHarness, anvil_url: str
    ) -> None:
        admin = await api.key("admin")
        for body in (
            chain_body(31337, anvil_url, colour="red"),
            chain_body(31337, anvil_url, confirmations="many"),
            chain_body(31337, "ftp://example.org"),
            chain_body(31337, anvil_url, max_fee_per_gas_cap="1.5"),
        ):
            response = await api.client.post("/v1/chains", headers=admin, json=body)
            assert response.status_code == 422, body
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["code"] == "validation_error"


class TestUpdateChain:
    async def test_patch_changes_fields_and_rejects_null(
        self, api: ApiHarness, anvil_url: str
    ) -> None:
        admin = await api.key("admin")
        await api.client.post("/v1/chains", headers=admin, json=chain_body(31337, anvil_url))
        changed = await api.client.patch(
            "/v1/chains/31337", headers=admin, json={"confirmations": 4, "name": "Dev"}
        )
        assert (changed.json()["confirmations"], changed.json()["name"]) == (4, "Dev")
        refused = await api.client.patch("/v1/chains/31337", headers=admin, json={"name": None})
        assert refused.status_code == 422

    async def test_unknown_chain_is_404(self, api: ApiHarness) -> None:
        response = await api.client.patch(
            "/v1/chains/777", headers=await api.key("admin"), json={"confirmations": 1}
        )
        assert (response.status_code, response.json()["code"]) == (404, "chain_not_found")


class TestRedaction:
    async def test_rpc_url_paths_are_hidden_in_responses(
        self, api: ApiHarness, anvil_url: str
    ) -> None:
        admin = await api.key("admin")
        url = f"{anvil_url}/?apikey=secretprojectkey"
        created = await api.client.post("/v1/chains", headers=admin, json=chain_body(31337, url))
        assert created.status_code == 201, created.text
        assert "secretprojectkey" not in created.text
        assert created.json()["rpc_urls"] == [f"{anvil_url}/***"]
