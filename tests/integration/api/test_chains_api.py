"""Chain routes over HTTP against a real anvil, on both databases."""

from collections.abc import AsyncIterator
from typing import Any

import pytest

from chainflow.api.app import create_app
from chainflow.core.settings import Settings
from chainflow.infra.db.uow import unit_of_work
from tests.support.chains import add_anvil_chain
from tests.support.fixtures import ApiHarness, open_api
from tests.support.processes import refusing_port
from tests.support.tcp_servers import (
    Handler,
    endless_body,
    http_answer,
    json_rpc,
    redirect,
    redis_like,
    tcp_server,
)


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
        body = chain_body(31337, f"http://127.0.0.1:{refusing_port()}")
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


@pytest.fixture
async def strict_api(settings: Settings) -> AsyncIterator[ApiHarness]:
    """The API with its production default: RPC URLs on non-public hosts are refused."""
    strict = settings.model_copy(update={"rpc_allow_private_urls": False})
    async with open_api(create_app(strict)) as harness:
        yield harness


def forbidden_urls(port: int) -> list[str]:
    """Every class of non-public host, in the spellings a resolver accepts."""
    return [
        f"http://127.0.0.1:{port}",
        f"http://[::1]:{port}",
        f"http://localhost:{port}/rpc",  # a name: refused for what it resolves to
        f"http://2130706433:{port}",  # 127.0.0.1 as a decimal number
        f"http://0x7f.1:{port}",
        f"http://0177.0.0.1:{port}",
        f"http://127.1:{port}",
        f"http://[::ffff:127.0.0.1]:{port}",
        f"http://0.0.0.0:{port}",
        "http://127.0.0.1:6379",  # Redis
        "http://[::1]:6379",
        "http://127.0.0.1:5432",  # PostgreSQL
        "http://localhost:3306",
        "http://169.254.169.254/latest/meta-data",  # cloud metadata
        "http://10.1.2.3:8545",
        "http://172.16.5.4:8545",
        "http://192.168.1.1:8545",
        "http://100.64.0.1:8545",
        "http://[fd00::1]:8545",
        "http://[fe80::1]:8545",
        "http://224.0.0.1:8545",
        "http://[ff02::1]:8545",
    ]


class TestRpcUrlGuard:
    async def test_non_public_hosts_are_refused_without_a_connection(
        self, strict_api: ApiHarness
    ) -> None:
        admin = await strict_api.key("admin")
        async with (
            tcp_server(json_rpc({"result": "0x7a69"})) as v4,
            tcp_server(json_rpc({"result": "0x7a69"}), host="::1") as v6,
        ):
            urls = [*forbidden_urls(v4.port), v6.url]
            for url in urls:
                response = await strict_api.client.post(
                    "/v1/chains", headers=admin, json=chain_body(31337, url)
                )
                assert (response.status_code, response.json()["code"]) == (
                    422,
                    "rpc_url_forbidden",
                ), url
                assert "CHAINFLOW_RPC_ALLOW_PRIVATE_URLS" in response.json()["detail"]
            assert (v4.connections, v6.connections) == (0, 0)
        listed = await strict_api.client.get("/v1/chains", headers=admin)
        assert listed.json()["items"] == []

    async def test_patch_and_enable_check_the_urls_too(
        self, strict_api: ApiHarness, anvil_url: str
    ) -> None:
        admin = await strict_api.key("admin")
        async with unit_of_work(strict_api.resources.sessionmaker) as session:
            chain = await add_anvil_chain(session, anvil_url)  # as a seed file can put it
            chain.enabled = False
        for change in ({"rpc_urls": ["http://[::1]:8545"]}, {"enabled": True}):
            response = await strict_api.client.patch("/v1/chains/31337", headers=admin, json=change)
            assert (response.status_code, response.json()["code"]) == (422, "rpc_url_forbidden")
        stored = await strict_api.client.get("/v1/chains/31337", headers=admin)
        assert (stored.json()["enabled"], stored.json()["rpc_urls"]) == (False, [anvil_url])

    async def test_allowed_by_the_setting(self, api: ApiHarness, anvil_url: str) -> None:
        admin = await api.key("admin")
        body = chain_body(31337, anvil_url.replace("127.0.0.1", "localhost"))
        created = await api.client.post("/v1/chains", headers=admin, json=body)
        assert created.status_code == 201, created.text


class TestProbeSaysNothingOfTheTarget:
    """With private hosts allowed (as in `chainflow dev`), a failed probe still says only
    "unreachable", "not a JSON-RPC node" or "another chain", never what the target answered."""

    async def refusal(self, api: ApiHarness, url: str, chain_id: int = 31337) -> str:
        admin = await api.key("admin")
        response = await api.client.post(
            "/v1/chains", headers=admin, json=chain_body(chain_id, url)
        )
        assert response.status_code == 422, response.text
        assert (await api.client.get(f"/v1/chains/{chain_id}", headers=admin)).status_code == 404
        detail: str = response.json()["detail"]
        return detail.replace(url, "URL")

    async def test_open_and_closed_ports_look_the_same(self, api: ApiHarness) -> None:
        closed = await self.refusal(api, f"http://127.0.0.1:{refusing_port()}")
        async with tcp_server(redis_like()) as redis:
            assert await self.refusal(api, redis.url) == closed
        for real_service in ("http://127.0.0.1:6379", "http://127.0.0.1:5432"):
            assert await self.refusal(api, real_service) == closed
        assert closed == "rpc_urls[0] (URL) is unreachable"

    @pytest.mark.parametrize(
        "handler",
        [
            json_rpc({"error": {"code": -32000, "message": "SECRET from the target"}}),
            json_rpc({"result": "SECRET from the target"}),
            json_rpc({"result": ["SECRET"]}),
            http_answer("404 Not Found", b"<html>SECRET from the target</html>"),
            http_answer("500 SECRET Status", b"SECRET"),
            http_answer("200 OK", b"SECRET, not JSON"),
        ],
    )
    async def test_answers_are_not_echoed(self, api: ApiHarness, handler: Handler) -> None:
        async with tcp_server(handler) as target:
            detail = await self.refusal(api, target.url)
        assert detail == "rpc_urls[0] (URL) did not answer eth_chainId as a JSON-RPC node"

    async def test_another_chain_is_not_named(self, api: ApiHarness) -> None:
        async with tcp_server(json_rpc({"result": hex(424242)})) as target:
            detail = await self.refusal(api, target.url)
        assert detail == "rpc_urls[0] (URL) does not serve chain 31337"

    async def test_redirects_are_not_followed(self, api: ApiHarness) -> None:
        async with tcp_server(json_rpc({"result": hex(31337)})) as node:
            for status in ("301 Moved Permanently", "302 Found", "307 Temporary Redirect"):
                async with tcp_server(redirect(node.url, status)) as hop:
                    detail = await self.refusal(api, hop.url)
                    assert "JSON-RPC node" in detail
            assert node.connections == 0

    async def test_a_huge_answer_is_cut_off(self, api: ApiHarness) -> None:
        async with tcp_server(endless_body()) as target:
            await self.refusal(api, target.url)
            sent_mb = target.bytes_sent / 2**20
        assert sent_mb < 12  # the probe reads 4 KiB; ~4 MiB more sat in socket buffers
