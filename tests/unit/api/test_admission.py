"""Admission control: past the in-flight limit a request is refused at once with a 503
problem and Retry-After; health probes always pass; the slot frees when a request ends."""

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from chainflow.api.admission import Admission, cost_of
from chainflow.api.gate import GateMiddleware
from chainflow.core.settings import Settings


def app_with_gate(gate: asyncio.Event, entered: asyncio.Event) -> Starlette:
    async def slow(_: Request) -> PlainTextResponse:
        entered.set()
        await gate.wait()
        return PlainTextResponse("done")

    async def health(_: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/slow", slow), Route("/healthz", health)])
    app.add_middleware(GateMiddleware, settings=Settings(api_max_in_flight=1))
    return app


async def test_refuses_past_the_limit_then_admits_again() -> None:
    gate, entered = asyncio.Event(), asyncio.Event()
    transport = httpx.ASGITransport(app=app_with_gate(gate, entered))
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


class TestCostOf:
    @pytest.mark.parametrize(
        ("method", "path", "query", "body_bytes", "slots"),
        [
            ("GET", "/v1/wallets/0xab", b"", 0, 1),
            ("GET", "/v1/transactions", b"", 0, 5),  # the default page of 100 rows
            ("GET", "/v1/transactions", b"status=queued&limit=500", 0, 25),
            ("GET", "/v1/wallets", b"limit=1", 0, 1),
            ("GET", "/v1/wallets", b"limit=abc", 0, 5),  # refused later by the route
            ("POST", "/v1/transactions", b"", 1_000, 1),
            ("POST", "/v1/transactions/batch", b"", 4 << 20, 129),
        ],
    )
    def test_slots(self, method: str, path: str, query: bytes, body_bytes: int, slots: int) -> None:
        scope = {"method": method, "path": path, "query_string": query}
        assert cost_of(scope, body_bytes) == slots

    def test_a_request_alone_may_always_enter(self) -> None:
        admission = Admission(10)
        assert admission.enter(129) == 10
        assert admission.enter(1) == 0
        admission.leave(10)
        assert admission.enter(1) == 1
