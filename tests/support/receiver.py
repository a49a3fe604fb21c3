"""A real webhook receiver on 127.0.0.1: records every request, answers as a test scripts it,
and verifies signatures with the `standardwebhooks` library (what a user's receiver runs)."""

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)
    peer: object = None  # the client's (address, port): one per connection

    @property
    def msg_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def envelope(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.body)
        return value

    def verifies_with(self, secret: str) -> bool:
        try:
            Webhook(secret).verify(self.body, self.headers)
        except WebhookVerificationError:
            return False
        return True


# What to answer a request: (status, headers); given the request and how many requests with
# its webhook-id came before it.
Answer = Callable[[Received, int], tuple[int, dict[str, str]]]


def always(status: int, headers: dict[str, str] | None = None) -> Answer:
    return lambda _request, _seen: (status, headers or {})


@dataclass
class Receiver:
    """Its port is bound by `bind` (or `start`) on port 0: the OS picks a free one at the bind
    itself, so no other process can take it in between (a port picked free, closed, then bound
    again could be)."""

    port: int = 0
    answer: Answer = field(default_factory=lambda: always(200))
    received: list[Received] = field(default_factory=list)
    delay_s: float = 0.0  # how long the receiver takes to answer (a slow receiver)
    _runner: web.AppRunner | None = None
    _socket: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook?token=query-secret"

    def seen(self, msg_id: str) -> int:
        return sum(1 for r in self.received if r.msg_id == msg_id)

    def accepted(self) -> list[Received]:
        """The requests answered 2xx, in arrival order."""
        return [r for r in self.received if r.headers.get("x-test-answered", "") == "2xx"]

    def bind(self) -> int:
        """Hold a port of its own (or `port` again, after a stop), not listening yet:
        connections to it are refused until `start`. Returns the port."""
        if self._socket is None:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self.port))
            self._socket = sock
            self.port = sock.getsockname()[1]
        return self.port

    async def start(self) -> None:
        self.bind()
        assert self._socket is not None
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, self._socket).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        got = Received(
            headers=headers,
            body=body,
            peer=request.transport and request.transport.get_extra_info("peername"),
        )
        status, extra = self.answer(got, self.seen(got.msg_id) if "webhook-id" in headers else 0)
        headers["x-test-answered"] = "2xx" if 200 <= status < 300 else str(status)
        self.received.append(got)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)  # the receiver's latency, not synchronisation
        return web.Response(status=status, headers=extra, text="ok")


@asynccontextmanager
async def receiver(answer: Answer | None = None) -> AsyncIterator[Receiver]:
    server = Receiver()
    if answer is not None:
        server.answer = answer
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
