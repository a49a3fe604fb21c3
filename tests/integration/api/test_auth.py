"""API keys over HTTP: 401 without or with a wrong key, 403 without the scope."""

import pytest

from tests.support.fixtures import ApiHarness


class TestAuthentication:
    @pytest.mark.parametrize(
        "headers",
        [
            {},
            {"Authorization": "Bearer cf_000000000000_wrong"},
            {"Authorization": "Bearer garbage"},
            {"Authorization": "Basic dXNlcjpwYXNz"},
        ],
    )
    async def test_missing_or_wrong_key_is_401_problem(
        self, api: ApiHarness, headers: dict[str, str]
    ) -> None:
        response = await api.client.get("/v1/chains", headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] in {"invalid_api_key", "http_403", "unauthorized"}

    async def test_a_key_with_a_tampered_secret_is_401(self, api: ApiHarness) -> None:
        headers = await api.key("read")
        headers["Authorization"] = headers["Authorization"][:-2] + "xx"
        response = await api.client.get("/v1/chains", headers=headers)
        assert response.status_code == 401


class TestScopes:
    async def test_read_key_cannot_add_a_chain(self, api: ApiHarness) -> None:
        response = await api.client.post(
            "/v1/chains", headers=await api.key("read"), json={"chain_id": 5}
        )
        assert response.status_code == 403
        assert response.json()["code"] == "insufficient_scope"

    async def test_wallets_key_can_read_but_not_administer_chains(self, api: ApiHarness) -> None:
        headers = await api.key("wallets")
        assert (await api.client.get("/v1/chains", headers=headers)).status_code == 200
        response = await api.client.patch("/v1/chains/1", headers=headers, json={})
        assert response.status_code == 403

    async def test_read_key_cannot_create_a_wallet(self, api: ApiHarness) -> None:
        response = await api.client.post(
            "/v1/wallets", headers=await api.key("read"), json={"generate": True}
        )
        assert response.status_code == 403
