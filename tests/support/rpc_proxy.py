"""A fault-injecting JSON-RPC proxy in front of a real node, for RPC failover tests."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from enum import StrEnum
from typing import Any

import aiohttp
import orjson
from aiohttp import web


class Fault(StrEnum):
    NONE = "none"
    DROP = "drop"  # close the connection without an answer; nothing reaches the node
    HTTP_500 = "http_500"
    HTTP_502 = "http_502"
    HTTP_429 = "http_429"  # with a Retry-After header when `retry_after_s` is set
    DELAY = "delay"  # hold the request for `delay_s`, then forward it (clients time out first)
    WRONG_CHAIN = "wrong_chain"  # eth_chainId answers `wrong_chain_id`; the rest is forwarded
    LOSE_RESPONSE = "lose_response"  # forward to the node, then drop the connection


class RpcProxy:
    """Forwards JSON-RPC POSTs on any path to `upstream`, applying the current `fault`."""

    def __init__(self, upstream: str, http: aiohttp.ClientSession) -> None:
        self.upstream = upstream
        self.url = ""
        self.fault = Fault.NONE
        self.retry_after_s: int | None = None
        self.delay_s = 30.0
        self.wrong_chain_id = 1
        self.received: list[str] = []  # methods of every request, in arrival order
        self.forwarded: list[str] = []  # methods the node was sent
        self._http = http
        self._stopping = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        methods = _methods(orjson.loads(body))
        self.received += methods
        fault = self.fault
        if fault is Fault.DELAY:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.delay_s)
        if fault is Fault.WRONG_CHAIN and methods == ["eth_chainId"]:
            return web.json_response(
                {
                    "jsonrpc": "2.0",
                    "id": orjson.loads(body)["id"],
                    "result": hex(self.wrong_chain_id),
                }
            )
        if fault in _STATUS:
            return self._status_response(_STATUS[fault])
        if fault is Fault.DROP or self._stopping.is_set():
            return _drop(request)
        answer = await self._forward(body, methods)
        return _drop(request) if fault is Fault.LOSE_RESPONSE else answer

    def _status_response(self, status: int) -> web.Response:
        headers = {}
        if status == 429 and self.retry_after_s is not None:
            headers["Retry-After"] = str(self.retry_after_s)
        return web.Response(status=status, text=f"HTTP {status} from the proxy", headers=headers)

    async def _forward(self, body: bytes, methods: list[str]) -> web.Response:
        self.forwarded += methods
        headers = {"Content-Type": "application/json"}
        async with self._http.post(self.upstream, data=body, headers=headers) as response:
            payload = await response.read()
            return web.Response(
                body=payload, status=response.status, content_type="application/json"
            )

    def stop(self) -> None:
        self._stopping.set()


_STATUS = {Fault.HTTP_500: 500, Fault.HTTP_502: 502, Fault.HTTP_429: 429}


def _methods(payload: Any) -> list[str]:
    items = payload if isinstance(payload, list) else [payload]
    return [str(item.get("method")) for item in items if isinstance(item, dict)]


def _drop(request: web.Request) -> web.Response:
    # Closing the transport makes the client see a reset connection instead of an answer.
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=204)


@contextlib.asynccontextmanager
async def serve_proxy(
    upstream: str, http: aiohttp.ClientSession, *, path: str = "/"
) -> AsyncIterator[RpcProxy]:
    """Run a proxy on 127.0.0.1 on a free port; its `url` ends with `path`."""
    proxy = RpcProxy(upstream, http)
    app = web.Application()
    app.router.add_post("/{tail:.*}", proxy.handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    proxy.url = f"http://{host}:{port}{path}"
    try:
        yield proxy
    finally:
        proxy.stop()
        await runner.cleanup()
