"""HTTP connections below the app: how long a request's head may take, how large it may be,
and how many connections one API process keeps open.

uvicorn bounds none of these: a connection that sends nothing, or trickles its headers a byte
at a time, stays open for good (its keep-alive timer runs only after a response, and any byte
stops it), and httptools keeps every byte of a header line until it ends. A thousand idle
connections used up a process's 1,024 file descriptors (it answered nothing, not even
/healthz, and could open no database connection), and one 300 MB header took 350 MB of memory.
Here, per connection:
- the head (request line and headers) must arrive whole within `head_timeout_s` of its first
  byte, or of the connection's start, or of the previous response (whatever bytes arrive in
  between, CRLFs included): else `408 request_timeout` (if any byte came) and the connection
  is closed;
- a response sent before its request's body arrived whole closes the connection;
- a head larger than MAX_HEAD_BYTES gets `431 request_header_too_large` and is closed;
- past `max_connections` open connections, a new one is closed at once;
- what the HTTP parser refuses gets a `400 bad_request` problem (uvicorn's is plain text).
Bodies have their own size and time limits, at the gate (gate.py, body.py).
"""

import asyncio
import resource
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 64 * 1024
"""Request line and headers together (nginx: 4 buffers of 8 KiB by default; h11: 16 KiB)."""
FD_RESERVE = 256
"""File descriptors kept for the process's own use: database and Redis pools, RPC clients,
logs. Connections beyond the open-file limit less these are closed at once."""
_REASONS = {400: "Bad Request", 408: "Request Timeout", 431: "Request Header Fields Too Large"}


def max_connections() -> int:
    """The most client connections one process keeps open, from its open-file limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 100_000
    return max(64, soft - FD_RESERVE)


def bounded_http(head_timeout_s: float, connection_limit: int) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with the bounds above (given to `uvicorn.Config(http=)`)."""

    class BoundedHttp(_BoundedHttp):
        pass

    BoundedHttp.head_timeout_s = head_timeout_s
    BoundedHttp.connection_limit = connection_limit
    return BoundedHttp


class _BoundedHttp(HttpToolsProtocol):
    head_timeout_s: float = 10.0
    connection_limit: int = 100_000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._in_head = True  # until a request's headers are complete
        self._head_timer: asyncio.TimerHandle | None = None
        self._read_body_bytes = 0  # of the read being parsed
        self._head_seen = 0  # the current head's URL and headers, as the parser gave them

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.connection_limit:
            transport.close()
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._read_body_bytes = 0
        super().data_received(data)
        # Still in a head once the parser has seen these bytes: they were head but for a body
        # they ended (a read that ends one message and begins another counts that message's
        # head and what separates them too: at most one head too many).
        if self._in_head and not self.transport.is_closing():
            self._head_bytes += len(data) - self._read_body_bytes
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse_large_head()

    def send_400_response(self, msg: str) -> None:  # noqa: ARG002 - uvicorn's words
        """What the parser refused (an unknown method, Content-Length with Transfer-Encoding, a
        malformed length): a problem, where uvicorn answered plain text."""
        if self.transport.is_closing():
            return  # refused already
        self._refuse(400, "bad_request", "Bad request", "the request is not valid HTTP/1.1")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_seen = 0
        self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._head_seen += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_seen += len(name) + len(value) + 4  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self.transport.is_closing():
            return  # refused: what the parser still finds in this read begins no request
        # A head that arrived in one read completes before data_received can count it.
        if self._head_seen > MAX_HEAD_BYTES:
            self._refuse_large_head()
            return
        self._in_head = False
        self._head_bytes = 0
        self._disarm_head_timer()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._read_body_bytes += len(body)
        if not self.transport.is_closing():
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self.transport.is_closing():
            super().on_message_complete()

    def on_response_complete(self) -> None:
        """The next head is timed from here: uvicorn's keep-alive timer stops at any byte
        (a CRLF between requests, which the parser skips without beginning a message) and is
        never armed again. A response sent before its request's body arrived whole closes the
        connection: that body could otherwise trickle in for good."""
        super().on_response_complete()
        if self.transport.is_closing() or self.pipeline:
            return
        if self.cycle is not None and self.cycle.response_complete and self.cycle.more_body:
            self.transport.close()
            return
        if not self._in_head:  # else the next head has begun: its timer runs already
            self._in_head = True
            self._head_bytes = 0
        self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._in_head:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self._arm_head_timer()  # a pipelined head behind a running request: its turn later
            return
        if self._head_bytes == 0:
            self.transport.close()  # connected, sent nothing: there is no request to answer
            return
        self._refuse(
            408,
            "request_timeout",
            "Request timeout",
            f"the request line and headers did not arrive within {self.head_timeout_s:g} s",
        )

    def _refuse_large_head(self) -> None:
        self._refuse(
            431,
            "request_header_too_large",
            "Request header too large",
            f"the request line and headers exceed {MAX_HEAD_BYTES} bytes",
        )

    def _refuse(self, status: int, code: str, title: str, detail: str) -> None:
        """Answer a problem (no request was parsed: no instance) and close the connection."""
        self._disarm_head_timer()
        body = orjson.dumps(
            {
                "type": f"https://chainflow.dev/problems/{code}",
                "title": title,
                "status": status,
                "detail": detail,
                "code": code,
            }
        )
        head = (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
            "content-type: application/problem+json\r\n"
            f"content-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self.transport.close()
