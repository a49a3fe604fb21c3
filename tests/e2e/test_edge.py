"""The HTTP edge of a real `chainflow api` process (issue 14): a nested JSON body gets a 4xx
problem and the process lives on; clients that trickle a body in do not starve the API."""

import asyncio
import base64
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chainflow.domain.apikeys.service import create_api_key
from chainflow.infra.db.engine import create_engine, create_sessionmaker
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.signing.keystore import MasterKey
from tests.support.processes import base_env, listening_port, processes, wait_http

IN_FLIGHT = 4
BODY_TIMEOUT_S = 2

pytestmark = pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)


@dataclass
class Api:
    url: str
    port: int
    process: "subprocess.Popen[bytes]"
    headers: dict[str, str]


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    engine = create_engine(database_url)
    async with unit_of_work(create_sessionmaker(engine)) as session:
        _, token = await create_api_key(session, ["admin"])
    await engine.dispose()
    env = base_env(
        database_url=database_url,
        master_key=base64.b64encode(MasterKey.generate().secret.reveal()).decode(),
        api_max_in_flight=str(IN_FLIGHT),
        api_body_timeout_s=str(BODY_TIMEOUT_S),
        log_level="warning",
    )
    with processes([["api", "--port", "0"]], env, tmp_path) as (process,):
        port = await asyncio.to_thread(listening_port, process)
        url = f"http://127.0.0.1:{port}"
        await asyncio.to_thread(wait_http, f"{url}/healthz", process)
        yield Api(url, port, process, {"Authorization": f"Bearer {token}"})


async def post(api: Api, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    with_type = headers | {"Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{api.url}{path}", data=body, headers=with_type) as response,
    ):
        assert response.content_type == "application/problem+json", await response.text()
        return response.status, (await response.json())["code"]


async def list_chains(api: Api) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{api.url}/v1/chains", headers=api.headers) as response,
    ):
        return response.status


async def still_serves(api: Api) -> None:
    assert api.process.poll() is None, f"the API process died with {api.process.returncode}"
    assert await list_chains(api) == 200


class TestNestedJson:
    async def test_the_issue_body_gets_a_problem_and_the_process_lives(self, api: Api) -> None:
        deep = b"[" * 100_000 + b"]" * 100_000  # 200 kB: refused by its Content-Length
        assert await post(api, "/v1/wallets", deep, {}) == (413, "payload_too_large")
        assert await post(api, "/v1/wallets", deep, api.headers) == (413, "payload_too_large")
        within_limit = deep[:30_000] + deep[-30_000:]
        assert await post(api, "/v1/wallets", within_limit, {}) == (401, "invalid_api_key")
        await still_serves(api)

    async def test_deep_json_within_the_size_limits_gets_a_problem(self, api: Api) -> None:
        deep = b"[" * 30_000 + b"]" * 30_000  # 60 kB: under the route's 64 KiB
        assert await post(api, "/v1/wallets", deep, api.headers) == (422, "json_too_deep")
        batch = b'{"transactions": ' + b"[" * 500_000 + b"]" * 500_000 + b"}"
        assert await post(api, "/v1/transactions/batch", batch, api.headers) == (
            422,
            "json_too_deep",
        )
        await still_serves(api)


@asynccontextmanager
async def trickling(api: Api, count: int, *, key: bool) -> AsyncIterator[list[asyncio.Task[bytes]]]:
    """`count` raw clients that send a POST's headers and 1 byte of its 100-byte body, then
    wait; yields, per client, a task that reads the status line of the answer."""
    auth = f"Authorization: {api.headers['Authorization']}\r\n".encode() if key else b""
    streams = [await asyncio.open_connection("127.0.0.1", api.port) for _ in range(count)]
    try:
        for _, writer in streams:
            writer.write(
                b"POST /v1/transactions HTTP/1.1\r\nHost: t\r\n"
                + auth
                + b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
            )
            await writer.drain()
        yield [asyncio.create_task(reader.readline()) for reader, _ in streams]
    finally:
        for _, writer in streams:
            writer.close()


class TestSlowBodies:
    async def test_without_a_key_the_body_is_not_awaited(self, api: Api) -> None:
        async with trickling(api, 1, key=False) as (answer,):
            assert await answer == b"HTTP/1.1 401 Unauthorized\r\n"

    async def test_slow_senders_hold_no_slot_and_get_408(self, api: Api) -> None:
        # The key is cached from here on: no sender holds a slot to look it up in the database.
        assert await list_chains(api) == 200
        async with trickling(api, 3 * IN_FLIGHT, key=True) as answers:
            statuses = []
            waiting = asyncio.gather(*answers)
            while not waiting.done():  # the whole time they trickle, the API answers others
                statuses.append(await list_chains(api))
            assert set(await waiting) == {b"HTTP/1.1 408 Request Timeout\r\n"}
        assert statuses
        assert set(statuses) == {200}, statuses  # before issue 14: 503 for every one
        await still_serves(api)
