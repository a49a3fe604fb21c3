"""Servers the benchmarks start on a port picked free, started again on a new port when another
process took that port first.

`free_port` binds to port 0 and closes: between that and the server's own bind, any process on
the host may take the port (tests and other benchmarks start anvils and APIs all the time).
The server then fails ("Address already in use"), or worse, ours exits while the other one
answers in its place. So a start counts only once the port's listener is our own process, and
a start whose port another process holds is made again on a new port, at most START_ATTEMPTS
times. A server in this process binds port 0 itself and reads the port back: no race at all.
"""

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager

import psutil
from aiohttp import web

from chainflow.core.errors import Unavailable
from chainflow.infra.anvil import run_anvil

START_ATTEMPTS = 5


class PortTaken(RuntimeError):
    """Another process listens on the port a server of ours was started on."""


def free_port() -> int:
    """A port free now (bind to 0, then close): start on it with a retry (above)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def listens(procs: Iterable[psutil.Process], port: int) -> bool:
    """Whether one of `procs` (or a child of one) holds a listening TCP socket on `port`."""
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            for one in [proc, *proc.children(recursive=True)]:
                for conn in one.net_connections("tcp"):
                    if conn.status == psutil.CONN_LISTEN and conn.laddr[1] == port:
                        return True
    return False


def answers(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:`port`."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def _anvils() -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.NoSuchProcess):
            if "anvil" in child.name():
                found.append(child)
    return found


@asynccontextmanager
async def anvil_on_free_port() -> AsyncIterator[str]:
    """`run_anvil` on a free port; its URL once our anvil (not another process on that port)
    answers. Started again on a new port while another process took the port first."""
    for attempt in range(1, START_ATTEMPTS + 1):
        port = free_port()
        async with AsyncExitStack() as stack:
            try:
                url = await stack.enter_async_context(run_anvil(port=port))
            except Unavailable:
                # It exited: retried only if the port is another's (its stderr is not kept).
                if attempt == START_ATTEMPTS or not await asyncio.to_thread(answers, port):
                    raise
                continue
            if not await asyncio.to_thread(listens, _anvils(), port):
                # Another process's server answered on the port: leaving the stack stops ours.
                if attempt == START_ATTEMPTS:
                    raise PortTaken(f"anvil: port {port} held by another process")
                continue
            yield url
            return


async def serve_here(runner: web.AppRunner) -> int:
    """Serve `runner` (set up) on 127.0.0.1 on a port the OS picks at bind; return it."""
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port: int = runner.addresses[-1][1]  # (host, port) of the socket just bound
    return port
