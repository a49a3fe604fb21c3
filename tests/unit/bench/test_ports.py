"""A benchmark's server whose port another process took between `free_port` and its own bind
is started again on a new port, and only our own process's answer counts as started (before,
bench.webhooks failed at cluster start with "Address already in use")."""

import socket
import subprocess
import sys
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import psutil
import pytest
from aiohttp import web
from bench import ports
from bench.cluster import _serving, stop_all
from bench.ports import anvil_on_free_port, free_port, listens, serve_here

# A server answering GET /healthz on the port in argv[1]; bind fails if the port is taken.
_SERVER = """
import http.server, sys
class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Ok).serve_forever()
"""


def _server(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", _SERVER, str(port)], stderr=subprocess.DEVNULL)


@asynccontextmanager
async def _someone_else_serving() -> AsyncIterator[int]:
    """Another server on a port: it answers GET /healthz and JSON-RPC eth_chainId as ours
    would (the worst case: answered there, it looks started)."""

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def rpc(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": "0x7a69"})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/", rpc)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        yield await serve_here(runner)
    finally:
        await runner.cleanup()


@asynccontextmanager
async def _someone_else_silent() -> AsyncIterator[int]:
    """Another process's socket on a port: it accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("someone_else", [_someone_else_serving, _someone_else_silent])
async def test_an_api_whose_port_was_taken_starts_again_on_another(
    started: list[subprocess.Popen[bytes]],
    someone_else: Callable[[], AbstractAsyncContextManager[int]],
) -> None:
    def again(port: int) -> subprocess.Popen[bytes]:
        started.append(_server(port))
        return started[-1]

    async with someone_else() as taken:
        first = again(taken)  # as if `free_port` had picked it: its bind fails
        proc, port = await _serving(first, taken, again)
        assert first.wait(timeout=10) != 0
        assert port != taken
        assert proc is started[-1]
        assert len(started) == 2
        assert listens([psutil.Process(proc.pid)], port)
    await stop_all([proc])


async def test_an_anvil_whose_port_was_taken_starts_again_on_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with _someone_else_serving() as taken:
        picked = iter([taken])
        monkeypatch.setattr(ports, "free_port", lambda: next(picked, None) or free_port())
        async with anvil_on_free_port() as url:
            port = urllib.parse.urlsplit(url).port
            assert port is not None
            assert port != taken
            assert listens(ports._anvils(), port)
