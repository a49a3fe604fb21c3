"""`run_anvil` counts as started only on its own anvil's word: a port another process took
first (between a bind-to-0-then-close pick and anvil's bind: the other xdist worker's anvil or
API) fails the start instead of letting that process's server answer as this anvil, and port 0
(the default) lets anvil's own bind pick the port, read back from its "Listening on" line."""

import asyncio
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import psutil
import pytest
from aiohttp import web

from chainflow.core.errors import Unavailable
from chainflow.infra import anvil
from chainflow.infra.anvil import run_anvil

ANVIL_CHAIN_ID = "0x7a69"  # 31337
OTHER_CHAIN_ID = "0x1"


@asynccontextmanager
async def _another_server() -> AsyncIterator[int]:
    """Another server answering JSON-RPC eth_chainId (for another chain) on a port of its own."""

    async def rpc(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": OTHER_CHAIN_ID})

    app = web.Application()
    app.router.add_post("/", rpc)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield runner.addresses[-1][1]
    finally:
        await runner.cleanup()


async def _chain_id(url: str) -> str:
    async with aiohttp.ClientSession() as http:
        body = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
        async with http.post(url, json=body) as response:
            result: str = (await response.json())["result"]
            return result


def _anvil_listens(port: int) -> bool:
    for child in psutil.Process().children(recursive=True):
        if "anvil" in child.name():
            for conn in child.net_connections("tcp"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr[1] == port:
                    return True
    return False


async def test_a_port_another_server_holds_fails_the_start_instead_of_answering_as_ours() -> None:
    async with _another_server() as taken:
        assert await _chain_id(f"http://127.0.0.1:{taken}") == OTHER_CHAIN_ID
        with pytest.raises(Unavailable, match="Address already in use"):
            async with run_anvil(port=taken) as url:
                pytest.fail(f"started on {url}, whose port another server holds")


async def test_the_default_port_is_anvils_own_while_another_server_holds_a_port() -> None:
    async with _another_server() as taken, run_anvil() as url:
        port = urllib.parse.urlsplit(url).port
        assert port is not None
        assert port != taken
        assert _anvil_listens(port)
        assert await _chain_id(url) == ANVIL_CHAIN_ID
    assert not _anvil_listens(port)  # stopped on exit


async def test_the_banner_is_read_and_the_output_after_it_consumed_to_its_end() -> None:
    # anvil writes a line per RPC call into the pipe its banner comes through (64 KiB on
    # Linux): after the banner run_anvil reads and drops all of it, so nothing piles up (in a
    # file it grew for as long as `chainflow dev` ran) and no write of anvil's can block.
    stream = asyncio.StreamReader()
    stream.feed_data(b"banner\n" * 50 + b"Listening on 127.0.0.1:40123\n")
    stream.feed_data(b"eth_sendRawTransaction\n" * 20_000)  # ~460 KB
    stream.feed_eof()
    assert await anvil._wait_listening(stream, _process_still_running()) == (
        "http://127.0.0.1:40123"
    )
    assert not stream.at_eof()
    await asyncio.wait_for(anvil._discard(stream), timeout=5)
    assert stream.at_eof()


async def test_an_anvil_that_exits_before_its_banner_says_why() -> None:
    stream = asyncio.StreamReader()
    stream.feed_data(b"Error: Address already in use (os error 98)\n")
    stream.feed_eof()
    with pytest.raises(Unavailable, match="Address already in use"):
        await anvil._wait_listening(stream, _process_exited(1))


class _Process:
    def __init__(self, returncode: int | None) -> None:
        self.returncode = returncode

    async def wait(self) -> int | None:
        return self.returncode


def _process_still_running() -> Any:
    return _Process(None)


def _process_exited(code: int) -> Any:
    return _Process(code)
