"""Ports of the benchmarks' servers: each server's own bind picks its port (port 0), and the
port is read back from the server, never picked free beforehand.

A port picked free (bind to 0, then close) could be taken by any process on the host between
that and the server's own bind (tests and other benchmarks start anvils and APIs all the time):
the server then failed ("Address already in use"), or ours exited while the other one answered
in its place. Bound at 0 by the server itself, no other process can take it first: anvil says
where it listens (`run_anvil()`), `chainflow api|dev --port 0` is read from its listening socket
(`listening_port`), and a server in this process reads its own socket (`serve_here`).
"""

import contextlib
import subprocess
import time
from typing import Any

import psutil
from aiohttp import web


def listening_port(process: subprocess.Popen[Any], *, timeout_s: float = 60) -> int:
    """The TCP port `process` itself listens on, once it does: a server started with
    `--port 0` (its own bind picked the port)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            ports = {
                conn.laddr[1]
                for conn in psutil.Process(process.pid).net_connections("tcp")
                if conn.status == psutil.CONN_LISTEN
            }
            if len(ports) > 1:
                raise RuntimeError(f"{process.args!r} listens on several ports: {sorted(ports)}")
            if ports:
                return ports.pop()
        time.sleep(0.05)  # polling a process that is still starting
    raise RuntimeError(f"{process.args!r} did not listen in time")


async def serve_here(runner: web.AppRunner) -> int:
    """Serve `runner` (set up) on 127.0.0.1 on a port the OS picks at bind; return it."""
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port: int = runner.addresses[-1][1]  # (host, port) of the socket just bound
    return port
