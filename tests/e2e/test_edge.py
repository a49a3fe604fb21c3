"""The HTTP edge of a real `chainflow api` process (issue 14): a nested JSON body gets a 4xx
problem and the process lives on; clients that trickle a body in, or a head, or hold idle
connections, do not starve the API; a huge head is refused."""

import asyncio
import base64
import json
import resource
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
from tests.support.polling import eventually
from tests.support.processes import base_env, listening_port, processes, wait_http

IN_FLIGHT = 4
BODY_TIMEOUT_S = 2
HEADER_TIMEOUT_S = 1

pytestmark = pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)


@dataclass
class Api:
    url: str
    port: int
    process: "subprocess.Popen[bytes]"
    headers: dict[str, str]


@asynccontextmanager
async def running_api(
    database_url: str, tmp_path: Path, *, open_files: int | None = None
) -> AsyncIterator[Api]:
    """A `chainflow api` process; `open_files`: its soft limit of open files (it inherits
    ours, lowered while it starts)."""
    engine = create_engine(database_url)
    async with unit_of_work(create_sessionmaker(engine)) as session:
        _, token = await create_api_key(session, ["admin"])
    await engine.dispose()
    env = base_env(
        database_url=database_url,
        master_key=base64.b64encode(MasterKey.generate().secret.reveal()).decode(),
        api_max_in_flight=str(IN_FLIGHT),
        api_body_timeout_s=str(BODY_TIMEOUT_S),
        api_header_timeout_s=str(HEADER_TIMEOUT_S),
        log_level="warning",
    )
    ours = resource.getrlimit(resource.RLIMIT_NOFILE)
    if open_files is not None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, ours[1]))
    try:
        with processes([["api", "--port", "0"]], env, tmp_path) as (process,):
            resource.setrlimit(resource.RLIMIT_NOFILE, ours)
            port = await asyncio.to_thread(listening_port, process)
            url = f"http://127.0.0.1:{port}"
            await asyncio.to_thread(wait_http, f"{url}/healthz", process)
            yield Api(url, port, process, {"Authorization": f"Bearer {token}"})
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, ours)


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(database_url, tmp_path) as started:
        yield started


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


async def status_line(reader: asyncio.StreamReader) -> bytes:
    """The first line the server sends, or b"" once it closes; within a deadline."""
    async with asyncio.timeout(HEADER_TIMEOUT_S * 10):
        return await reader.readline()


class TestHeads:
    async def test_a_connection_that_sends_nothing_is_closed(self, api: Api) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
        try:
            assert await status_line(reader) == b""  # before: open for good
        finally:
            writer.close()

    async def test_a_trickled_head_gets_408(self, api: Api) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
        try:
            writer.write(b"GET /v1/chains HTTP/1.1\r\nHost: t\r\n")
            answer = asyncio.create_task(status_line(reader))
            sent = 0
            while not answer.done():  # a header every 0.1 s: before, each one kept it open
                writer.write(b"X-Slow-%d: 1\r\n" % sent)
                sent += 1
                await asyncio.wait([answer], timeout=0.1)
            assert answer.result() == b"HTTP/1.1 408 Request Timeout\r\n"
            assert sent >= HEADER_TIMEOUT_S * 5
        finally:
            writer.close()
        await still_serves(api)

    async def test_a_head_over_64_kib_gets_431(self, api: Api) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
        try:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 100_000)
            assert await status_line(reader) == b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        finally:
            writer.close()
        await still_serves(api)

    async def test_a_pipelined_head_after_a_large_body_is_not_431(self, api: Api) -> None:
        # Before: the read holding the body's end and the next head's start counted whole.
        body = b'{"transactions": []}' + b" " * 100_000
        reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
        try:
            writer.write(
                b"POST /v1/transactions/batch HTTP/1.1\r\nHost: t\r\n"
                + f"Authorization: {api.headers['Authorization']}\r\n".encode()
                + b"Content-Type: application/json\r\n"
                + b"Content-Length: %d\r\n\r\n" % len(body)
                + body
                + b"GET /healthz HTTP/1.1\r\nHo"
            )
            assert await status_line(reader) == b"HTTP/1.1 422 Unprocessable Entity\r\n"
            writer.write(b"st: t\r\n\r\n")
            async with asyncio.timeout(HEADER_TIMEOUT_S * 10):
                answers = b""
                while b"HTTP/1.1 200 OK\r\n" not in answers:
                    chunk = await reader.read(65536)
                    assert chunk, answers
                    answers += chunk
        finally:
            writer.close()

    async def test_a_whole_head_over_64_kib_in_one_write_gets_431(self, api: Api) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
        try:
            writer.write(
                b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n"
            )
            # Before: 200 (the head's count was reset when it completed, before the check).
            assert await status_line(reader) == b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        finally:
            writer.close()
        await still_serves(api)

    async def test_what_the_parser_refuses_is_a_400_problem(self, api: Api) -> None:
        for head in (
            b"FOO / HTTP/1.1\r\nHost: t\r\n\r\n",
            b"POST /v1/wallets HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
            b"POST /v1/wallets HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
            try:
                writer.write(head)
                async with asyncio.timeout(10):
                    answer = await reader.read()  # then closed
            finally:
                writer.close()
            headers, _, body = answer.partition(b"\r\n\r\n")
            assert headers.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer
            assert b"content-type: application/problem+json" in headers  # before: text/plain
            assert json.loads(body)["code"] == "bad_request"
        await still_serves(api)

    async def test_idle_connections_past_the_open_file_limit_do_not_wedge_it(
        self, database_url: str, tmp_path: Path
    ) -> None:
        async with running_api(database_url, tmp_path, open_files=512) as api:
            idle = [await asyncio.open_connection("127.0.0.1", api.port) for _ in range(600)]
            try:
                # Before: every descriptor held, it answered nothing while they stayed open
                # (not even with a new database connection); now the head timeout frees them
                # and connections past the limit are closed at once.
                await eventually(lambda: answers_chains(api), timeout_s=HEADER_TIMEOUT_S * 20)
            finally:
                for _, writer in idle:
                    writer.close()
            await still_serves(api)


async def answers_chains(api: Api) -> bool:
    try:
        return await list_chains(api) == 200
    except aiohttp.ClientError:
        return False


class TestHead:
    async def test_every_get_route_answers_head_without_a_body(self, api: Api) -> None:
        # Before: 405 for every route, /healthz included (a load balancer's HEAD probe).
        async with aiohttp.ClientSession() as http:
            for path, headers in [("/healthz", {}), ("/v1/me", api.headers), ("/console", {})]:
                async with http.head(f"{api.url}{path}", headers=headers) as response:
                    assert response.status == 200, path
                    assert int(response.headers["Content-Length"]) > 0
                    assert await response.read() == b""
            async with http.head(f"{api.url}/v1/me") as response:
                assert response.status == 401
            stream = f"{api.url}/v1/events/stream"
            async with http.head(stream, headers=api.headers) as response:
                assert response.status == 405  # a stream never ends: no HEAD
        await still_serves(api)


async def closed_within(reader: asyncio.StreamReader, deadline_s: float) -> bytes:
    """All the server sends until it closes the connection (a reset too: it closed with bytes
    of ours unread); fails if it is open past the deadline."""
    received = b""
    async with asyncio.timeout(deadline_s):
        try:
            while chunk := await reader.read(65536):
                received += chunk
        except ConnectionResetError:
            pass
    return received


class TestBetweenRequests:
    """After a response, the wait for the next head is bounded whatever bytes arrive."""

    async def test_a_request_then_crlfs_is_closed(self, api: Api) -> None:
        # Before: the parser skips CRLFs between requests, each stopped the keep-alive timer.
        head = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
        await answered_then_closed(api, head, b"HTTP/1.1 200 OK\r\n", b"\r\n")

    async def test_an_endless_unread_body_is_closed(self, api: Api) -> None:
        # Before: answered before its body, the connection took body bytes for good.
        head = b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n"
        await answered_then_closed(api, head, b"HTTP/1.1 405 Method Not Allowed\r\n", b"x")


async def answered_then_closed(api: Api, head: bytes, status: bytes, trickle: bytes) -> None:
    """Send `head`, read its `status`, then send `trickle` every 0.1 s until the API closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    try:
        writer.write(head)
        assert await status_line(reader) == status
        closing = asyncio.create_task(closed_within(reader, HEADER_TIMEOUT_S * 10))
        while not closing.done():
            writer.write(trickle)
            await asyncio.wait([closing], timeout=0.1)
        closing.result()
    finally:
        writer.close()
    await still_serves(api)
