"""A chain added through the API while a worker runs is served at once, doorbells included:
real `chainflow api` and `chainflow worker` processes on PostgreSQL and Redis, no restart."""

import time
from pathlib import Path

import aiohttp
import pytest

from chainflow.domain.apikeys.service import create_api_key
from chainflow.infra.db.engine import create_engine, create_sessionmaker
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.rpc.client import RpcClient
from chainflow.infra.signing.keystore import MasterKey
from tests.e2e.test_concurrency import master_env
from tests.support.chains import ANVIL_CHAIN_ID
from tests.support.databases import REDIS_URL
from tests.support.polling import eventually
from tests.support.processes import base_env, listening_port, processes, wait_http

SINK = "0x000000000000000000000000000000000000dEaD"


async def _admin_token(database_url: str) -> str:
    engine = create_engine(database_url)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as session:
            _, token = await create_api_key(session, ["admin"])
    finally:
        await engine.dispose()
    return token


@pytest.mark.timeout(300)
@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
async def test_a_chain_added_through_the_api_is_served_without_a_restart(
    database_url: str, anvil_url: str, tmp_path: Path
) -> None:
    token = await _admin_token(database_url)
    env = base_env(
        database_url=database_url,
        redis_url=REDIS_URL,
        master_key=master_env(MasterKey.generate()),
        metrics_cache_s="0",
        log_format="json",
        log_level="warning",
    )
    headers = {"Authorization": f"Bearer {token}"}
    commands = [["api", "--port", "0"], ["worker", "--metrics-port", "0"]]
    with processes(commands, env, tmp_path) as started:
        api = f"http://127.0.0.1:{listening_port(started[0])}"
        wait_http(f"{api}/readyz", started[0])
        async with aiohttp.ClientSession(headers=headers) as http:
            chain = {
                "chain_id": ANVIL_CHAIN_ID,
                "name": "Anvil (added at runtime)",
                "native_symbol": "ETH",
                "rpc_urls": [anvil_url],
                "eip1559": True,
                "confirmations": 1,
                "block_time_s": 1,
            }
            async with http.post(f"{api}/v1/chains", json=chain) as response:
                assert response.status == 201, await response.text()
            body = {"generate": True, "chain_ids": [ANVIL_CHAIN_ID]}
            async with http.post(f"{api}/v1/wallets", json=body) as response:
                assert response.status == 201, await response.text()
                address = (await response.json())["address"]
            await RpcClient(http, anvil_url).call("anvil_setBalance", [address, hex(10**20)])

            for attempt in ("first", "second"):
                request = {"chain_id": ANVIL_CHAIN_ID, "wallet": address, "to": SINK, "value": "1"}
                submitted = time.monotonic()
                async with http.post(f"{api}/v1/transactions", json=request) as response:
                    assert response.status == 202, await response.text()
                    tx_id = (await response.json())["id"]

                async def confirmed(tx_id: str = tx_id) -> bool:
                    async with http.get(f"{api}/v1/transactions/{tx_id}") as response:
                        return bool((await response.json())["status"] == "confirmed")

                await eventually(confirmed, timeout_s=30)
                elapsed = time.monotonic() - submitted
                print(f"{attempt} request confirmed {elapsed:.1f} s after submit")  # noqa: T201

            async def doorbells_consumed() -> bool:
                async with http.get(f"{api}/metrics") as response:
                    text = await response.text()
                return 'chainflow_queue_jobs{state="waiting"} 0.0' in text.splitlines()

            # Before, a chain added at runtime had its doorbells left waiting until a restart.
            await eventually(doorbells_consumed, timeout_s=15, interval_s=0.2)
