"""The one `send` wrapper of a request at the edge (edge.py)."""

from collections.abc import Callable

from starlette.datastructures import MutableHeaders
from starlette.types import Message, Scope, Send

from chainflow.api import ratelimit


class Reply:
    """`send` for everything behind the edge: notes the response's status (500 until one
    starts: the server answers 500), adds to its start the key's RateLimit-* headers (once
    the gate `admitted` the request) and then X-Request-ID, and calls `on_start` once, when
    the headers go (a stream frees its admission slot then)."""

    __slots__ = ("_request_id", "_scope", "_send", "admitted", "on_start", "status")

    def __init__(self, send: Send, scope: Scope, request_id: str) -> None:
        self._send = send
        self._scope = scope
        self._request_id = request_id
        self.status = 500
        self.admitted = False
        self.on_start: Callable[[], None] | None = None

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            headers = MutableHeaders(scope=message)
            if self.admitted:
                found = ratelimit.headers_of(self._scope)
                if found is not None:
                    for name, value in found:
                        headers.append(name, value)
            headers.append("X-Request-ID", self._request_id)
            if self.on_start is not None:
                on_start, self.on_start = self.on_start, None
                on_start()
        await self._send(message)
