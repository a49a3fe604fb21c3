"""RPC answers are parsed under the service-wide nesting bound (issue 14): a node that answers
deeply nested JSON is a transport failure, not a crash or a recursion deep in our code."""

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from chainflow.infra.net.urlguard import UrlGuard
from chainflow.infra.rpc.client import RpcCallError, RpcClient, RpcTransportError, new_http_session


@pytest.fixture
async def answers() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A node that answers each request with the next body the test queued."""
    queued: list[bytes] = []

    async def answer(_: web.Request) -> web.Response:
        return web.Response(body=queued.pop(0), content_type="application/json")

    app = web.Application()
    app.router.add_post("/", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()  # the OS picks the port at the bind
    port = runner.addresses[-1][1]
    yield f"http://127.0.0.1:{port}/", queued
    await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with new_http_session(guard=UrlGuard(allow_private=True)) as session:
        yield session


class TestNestedAnswers:
    @pytest.mark.parametrize("depth", [40, 900, 100_000])
    async def test_a_deep_error_message_is_a_transport_error(
        self, answers: tuple[str, list[bytes]], http: aiohttp.ClientSession, depth: int
    ) -> None:
        url, queued = answers
        message = b"[" * depth + b"]" * depth
        queued.append(b'{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":' + message + b"}}")
        with pytest.raises(RpcTransportError, match="nested too deep"):
            await RpcClient(http, url).call("eth_chainId")

    async def test_an_ordinary_error_is_still_the_node_s_answer(
        self, answers: tuple[str, list[bytes]], http: aiohttp.ClientSession
    ) -> None:
        url, queued = answers
        queued.append(b'{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"nonce too low"}}')
        with pytest.raises(RpcCallError, match="nonce too low"):
            await RpcClient(http, url).call("eth_chainId")
