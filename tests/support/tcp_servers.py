"""Small real TCP servers that answer like things an RPC URL must not reach, follow or trust:
a Redis-like service, garbage, chosen HTTP answers, redirects and endless bodies."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import orjson


@dataclass
class TcpServer:
    """What a test server saw: how many connections, how many bytes it managed to send."""

    host: str
    port: int = 0
    connections: int = 0
    bytes_sent: int = 0

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


Handler = Callable[[TcpServer, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def tcp_server(handler: Handler, *, host: str = "127.0.0.1") -> AsyncIterator[TcpServer]:
    """Serve `handler` on a free port of `host` until the block ends."""
    state = TcpServer(host)
    clients: set[asyncio.StreamWriter] = set()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        clients.add(writer)
        try:
            await handler(state, reader, writer)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass  # the client hung up: what these servers are for
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    server = await asyncio.start_server(on_client, host, 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        for writer in clients:
            writer.close()  # a keep-alive client would otherwise hold its handler open
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """Read one HTTP request (head and Content-Length body); return its body."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return await reader.readexactly(length)


async def _send(state: TcpServer, writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()
    state.bytes_sent += len(data)


def redis_like() -> Handler:
    """Answers whatever comes like Redis does to an HTTP request, then hangs up."""

    async def handle(
        state: TcpServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.read(4096)
        await _send(state, writer, b"-ERR unknown command 'POST', with args beginning with: \r\n")

    return handle


def http_answer(status: str, body: bytes, *, headers: dict[str, str] | None = None) -> Handler:
    """One HTTP answer, e.g. `http_answer("200 OK", b'{"jsonrpc": ...}')`, to every request."""
    fields = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    fields |= headers or {}
    head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())

    async def handle(
        state: TcpServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:  # keep-alive: answer every request on the connection
            await read_request(reader)
            await _send(state, writer, head.encode() + b"\r\n" + body)

    return handle


def json_rpc(answer: dict[str, object]) -> Handler:
    """A JSON-RPC 'node' that gives `answer` (with the request's id) to every call."""
    return http_answer("200 OK", orjson.dumps({"jsonrpc": "2.0", "id": 1, **answer}))


def redirect(location: str, status: str = "307 Temporary Redirect") -> Handler:
    return http_answer(status, b"", headers={"Location": location})


def endless_body(*, declared_bytes: int | None = None, total_bytes: int = 200 << 20) -> Handler:
    """200 OK with a JSON-looking body of `total_bytes` (or until the client hangs up),
    optionally declaring `declared_bytes` as its Content-Length."""
    length = f"Content-Length: {declared_bytes}\r\n" if declared_bytes is not None else ""
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{length}Connection: close\r\n"
    chunk = b" " * 65536

    async def handle(
        state: TcpServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(reader)
        await _send(state, writer, head.encode() + b"\r\n" + b'{"jsonrpc": "2.0", "result": "')
        while state.bytes_sent < total_bytes:
            await _send(state, writer, chunk)

    return handle
