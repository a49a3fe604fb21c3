"""The one layer in front of the app (edge.py): past the in-flight limit a request is refused
at once with a 503 problem and Retry-After, health probes always pass, the slot frees when a
request ends; every answer, the edge's refusals included, carries X-Request-ID and is counted
by route, method and status; a stream's slot is freed once its headers are sent; a request
that raises is counted as the server's 500."""

import asyncio

import httpx
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from chainflow.api.edge import EdgeMiddleware
from chainflow.core.settings import Settings


def counted(method: str, status: int, route: str = "(unrouted)") -> float:
    labels = {"route": route, "method": method, "status": str(status)}
    return REGISTRY.get_sample_value("chainflow_api_requests_total", labels) or 0.0


class Stream:
    """An endless response: headers, then it waits for `done`."""

    def __init__(self) -> None:
        self.started, self.done = asyncio.Event(), asyncio.Event()

    async def __call__(self, _scope: Scope, _receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        self.started.set()
        await self.done.wait()
        await send({"type": "http.response.body", "body": b""})


def edge_app(held: asyncio.Event, entered: asyncio.Event, stream: Stream) -> Starlette:
    async def slow(_: Request) -> PlainTextResponse:
        entered.set()
        await held.wait()
        return PlainTextResponse("done")

    async def broken(_: Request) -> PlainTextResponse:
        raise RuntimeError("boom")

    async def health(_: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    routes = [
        Route("/slow", slow),
        Route("/broken", broken),
        Route("/healthz", health),
        Route("/v1/events/stream", stream),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(EdgeMiddleware, settings=Settings(api_max_in_flight=1))
    return app


async def test_refuses_past_the_limit_then_admits_again() -> None:
    gate, entered = asyncio.Event(), asyncio.Event()
    transport = httpx.ASGITransport(app=edge_app(gate, entered, Stream()))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        first = asyncio.create_task(client.get("/slow"))
        await entered.wait()
        refused = await client.get("/slow")
        assert refused.status_code == 503
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["code"] == "overloaded"
        assert refused.json()["status"] == 503
        assert (await client.get("/healthz")).status_code == 200  # probes are never refused
        gate.set()
        assert (await first).status_code == 200
        assert (await client.get("/slow")).status_code == 200  # the slot is free again


async def test_a_refusal_carries_the_request_id_and_is_counted() -> None:
    held, entered = asyncio.Event(), asyncio.Event()
    before = counted("GET", 503)
    transport = httpx.ASGITransport(app=edge_app(held, entered, Stream()))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        first = asyncio.create_task(client.get("/slow"))
        await entered.wait()
        refused = await client.get("/slow", headers={"X-Request-ID": "caller-7"})
        held.set()
        admitted = await first
    assert refused.status_code == 503
    assert refused.headers["x-request-id"] == "caller-7"
    assert admitted.status_code == 200
    assert len(admitted.headers["x-request-id"]) == 32  # made: the client sent none
    assert counted("GET", 503) == before + 1


async def test_a_malformed_request_id_is_replaced() -> None:
    transport = httpx.ASGITransport(app=edge_app(asyncio.Event(), asyncio.Event(), Stream()))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/healthz", headers={"X-Request-ID": "no spaces allowed"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] != "no spaces allowed"


async def test_a_stream_frees_its_slot_once_its_headers_are_sent() -> None:
    held, entered, stream = asyncio.Event(), asyncio.Event(), Stream()
    held.set()
    transport = httpx.ASGITransport(app=edge_app(held, entered, stream))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        streaming = asyncio.create_task(client.get("/v1/events/stream"))
        await stream.started.wait()
        during = await client.get("/slow")  # the only slot is free again
        stream.done.set()
        assert (await streaming).headers["x-request-id"]
    assert during.status_code == 200


async def test_a_request_that_raises_is_counted_as_500() -> None:
    before = counted("GET", 500, "/broken")
    app = edge_app(asyncio.Event(), asyncio.Event(), Stream())
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/broken")
    assert response.status_code == 500
    assert counted("GET", 500, "/broken") == before + 1


async def test_metrics_scrapes_are_not_counted() -> None:
    before = counted("GET", 404)
    transport = httpx.ASGITransport(app=edge_app(asyncio.Event(), asyncio.Event(), Stream()))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/metrics")).status_code == 404
        assert (await client.get("/nowhere")).status_code == 404
    assert counted("GET", 404) == before + 1  # /nowhere only
