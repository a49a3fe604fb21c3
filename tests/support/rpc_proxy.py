"""A fault-injecting JSON-RPC proxy in front of a real node, for RPC failover tests."""

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
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
    HTTP_429 = "http_429"  # with a Retry-After header when `retry_after_s` is set (as all these)
    DELAY = "delay"  # hold the request for `delay_s`, then forward it (clients time out first)
    WRONG_CHAIN = "wrong_chain"  # eth_chainId answers `wrong_chain_id`; the rest is forwarded
    LOSE_RESPONSE = "lose_response"  # forward to the node, then drop the connection
    LAG = "lag"  # a node behind the head: stale nonces and block number, no new receipts
    NO_TXPOOL = "no_txpool"  # a node without txpool_*: -32601 for them, the rest forwarded
    CORRUPT = "corrupt"  # forward, then rewrite the results of the methods in `corrupt`


class RpcProxy:
    """Forwards JSON-RPC POSTs on any path to `upstream`, applying the current `fault`."""

    def __init__(self, upstream: str, http: aiohttp.ClientSession) -> None:
        self.upstream = upstream
        self.url = ""
        self.fault = Fault.NONE
        self.retry_after_s: int | str | None = None  # a str: sent as is, however malformed
        self.delay_s = 30.0
        self.wrong_chain_id = 1
        # CORRUPT: method -> a function of the node's result giving the result answered instead
        self.corrupt: dict[str, Callable[[Any], Any]] = {}
        # The next request that calls this method waits for `release()` (whatever the fault),
        # then goes on; `holding` is set once it waits.
        self.hold: str | None = None
        self.holding = asyncio.Event()
        self._released = asyncio.Event()
        self.mix: dict[Fault, float] = {}  # when set, each request draws its fault from it
        self.rng = random.Random(0)  # noqa: S311 - reproducible chaos, not cryptography
        self.injected: dict[Fault, int] = {}
        self._frozen: dict[str, Any] = {}  # LAG: the first answer seen per (method, params)
        self.received: list[str] = []  # methods of every request, in arrival order
        self.forwarded: list[str] = []  # methods the node was sent
        self._http = http
        self._stopping = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        methods = _methods(orjson.loads(body))
        self.received += methods
        if self.hold is not None and self.hold in methods:
            self.hold = None
            self.holding.set()
            await _first(self._released, self._stopping)
        fault = self._draw()
        self.injected[fault] = self.injected.get(fault, 0) + 1
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
        if fault is Fault.NO_TXPOOL and any(m.startswith("txpool_") for m in methods):
            return await self._without_txpool(orjson.loads(body))
        if fault in _STATUS:
            return self._status_response(_STATUS[fault])
        if fault is Fault.DROP or self._stopping.is_set():
            return _drop(request)
        answer = await self._forward(body, methods)
        if fault is Fault.LAG:
            return self._lagging(orjson.loads(body), answer)
        if fault is Fault.CORRUPT:
            return self._corrupted(orjson.loads(body), answer)
        return _drop(request) if fault is Fault.LOSE_RESPONSE else answer

    def _draw(self) -> Fault:
        if not self.mix:
            return self.fault
        roll = self.rng.random()
        for fault, share in self.mix.items():
            if roll < share:
                return fault
            roll -= share
        return Fault.NONE

    def _lagging(self, sent: Any, answer: web.Response) -> web.Response:
        """Rewrite the node's answer as a node stuck in the past would give it."""

        def stale(call: dict[str, Any], result: Any) -> Any:
            method = call.get("method")
            if method == "eth_getTransactionReceipt":
                return None
            if method in ("eth_getTransactionCount", "eth_blockNumber"):
                key = f"{method}:{orjson.dumps(call.get('params')).decode()}"
                return self._frozen.setdefault(key, result)
            return result

        return _rewritten(sent, answer, stale)

    def _corrupted(self, sent: Any, answer: web.Response) -> web.Response:
        """Rewrite the results of the methods in `corrupt`, as a broken node or proxy would."""

        def corrupted(call: dict[str, Any], result: Any) -> Any:
            rewrite = self.corrupt.get(str(call.get("method")))
            return result if rewrite is None else rewrite(result)

        return _rewritten(sent, answer, corrupted)

    async def _without_txpool(self, sent: Any) -> web.Response:
        """Answer txpool_* calls as a node that does not know them; forward the others."""
        calls = sent if isinstance(sent, list) else [sent]
        others = [c for c in calls if not str(c.get("method")).startswith("txpool_")]
        forwarded: dict[Any, Any] = {}
        if others:
            answer = await self._forward(orjson.dumps(others), _methods(others))
            assert isinstance(answer.body, bytes)
            forwarded = {reply.get("id"): reply for reply in orjson.loads(answer.body)}
        missing = {"code": -32601, "message": "Method not found"}
        replies = [
            forwarded.get(c.get("id"), {"jsonrpc": "2.0", "id": c.get("id"), "error": missing})
            for c in calls
        ]
        return web.json_response(replies if isinstance(sent, list) else replies[0])

    def _status_response(self, status: int) -> web.Response:
        headers = {}
        if self.retry_after_s is not None:
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

    def release(self) -> None:
        self._released.set()

    def stop(self) -> None:
        self._stopping.set()


_STATUS = {Fault.HTTP_500: 500, Fault.HTTP_502: 502, Fault.HTTP_429: 429}


def _rewritten(
    sent: Any, answer: web.Response, rewrite: Callable[[dict[str, Any], Any], Any]
) -> web.Response:
    """The node's `answer` to `sent` with each result replaced by `rewrite(call, result)`."""
    assert isinstance(answer.body, bytes)
    got = orjson.loads(answer.body)
    calls = {c.get("id"): c for c in (sent if isinstance(sent, list) else [sent])}
    for reply in got if isinstance(got, list) else [got]:
        call = calls.get(reply.get("id")) if isinstance(reply, dict) else None
        if call is not None and "result" in reply:
            reply["result"] = rewrite(call, reply["result"])
    return web.Response(body=orjson.dumps(got), content_type="application/json")


async def _first(*events: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


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
