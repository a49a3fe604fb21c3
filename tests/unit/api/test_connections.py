"""The bounded HTTP protocol (connections.py) in process, on a real socket, against the
installed uvicorn: it subclasses uvicorn's httptools protocol and leans on its internals, so
a uvicorn that changes them fails here in a second (the e2e twins: tests/e2e/test_edge.py)."""

import asyncio
from collections.abc import AsyncIterator

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.server import ServerState

from chainflow.api.connections import MAX_HEAD_BYTES, bounded_http

HEAD_TIMEOUT_S = 0.3
DEADLINE_S = 5


async def answer(scope: Scope, receive: Receive, send: Send) -> None:  # noqa: ARG001
    """200 for GET; any other method 405 at once, its body unread (as an app route does)."""
    if scope["type"] != "http":
        return
    status = 200 if scope["method"] == "GET" else 405
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
async def port() -> AsyncIterator[int]:
    config = uvicorn.Config(answer, log_config=None, access_log=False)
    config.load()
    state = ServerState()
    http = bounded_http(HEAD_TIMEOUT_S, 100)
    server = await asyncio.get_running_loop().create_server(
        lambda: http(config=config, server_state=state, app_state={}), "127.0.0.1", 0
    )
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for connection in list(state.connections):
            connection.transport.close()
        server.close()
        await server.wait_closed()


async def exchange(port: int, data: bytes, then: bytes = b"") -> bytes:
    """Send `data`, then `then` every 0.05 s, until the server closes; all it answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = b""
    try:
        writer.write(data)
        async with asyncio.timeout(DEADLINE_S):
            while True:
                try:
                    chunk = await asyncio.wait_for(reader.read(65536), 0.05)
                except TimeoutError:
                    if then:
                        writer.write(then)
                    continue
                except ConnectionResetError:
                    return received
                if not chunk:
                    return received
                received += chunk
    finally:
        writer.close()


async def test_after_a_response_crlfs_do_not_hold_the_connection(port: int) -> None:
    answers = await exchange(port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", then=b"\r\n")
    assert answers.startswith(b"HTTP/1.1 200 OK\r\n")


async def test_an_unread_body_does_not_hold_the_connection(port: int) -> None:
    head = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n"
    answers = await exchange(port, head, then=b"x")
    assert answers.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")


async def test_a_whole_head_over_the_limit_in_one_write_gets_431(port: int) -> None:
    big = b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n"
    answers = await exchange(port, big)
    assert answers.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")


async def test_a_head_begun_in_a_read_with_a_large_body_is_not_431(port: int) -> None:
    body = b"x" * 100_000
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body
            + b"GET / HTTP/1.1\r\nHo"
        )
        async with asyncio.timeout(DEADLINE_S):
            assert await reader.readline() == b"HTTP/1.1 405 Method Not Allowed\r\n"
            writer.write(b"st: t\r\nConnection: close\r\n\r\n")
            answers = await reader.read()
    finally:
        writer.close()
    assert b"HTTP/1.1 200 OK\r\n" in answers, answers
