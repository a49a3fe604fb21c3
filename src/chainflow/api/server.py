"""Serve the API with uvicorn; a SIGTERM or SIGINT drains requests and exits with status 0."""

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from chainflow.api.connections import bounded_http, max_connections
from chainflow.core.errors import Unavailable
from chainflow.core.logging import get_logger
from chainflow.core.settings import Settings

log = get_logger(__name__)


class _GracefulServer(uvicorn.Server):
    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Event streams never end by themselves: end them first, or the drain below would
        # wait for them forever (issue 16).
        app = self.config.app
        hub = getattr(getattr(app, "state", None), "event_hub", None)
        if hub is not None:
            hub.closed.set()
        await super().shutdown(sockets)

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            # uvicorn re-raises the captured signal after a graceful shutdown, which would end
            # the process with status -15; a drained shutdown is a success, so exit normally.
            self._captured_signals.clear()


def bind(host: str, port: int) -> socket.socket:
    """The listening address, bound before anything starts. Raises: Unavailable, one line.

    uvicorn would bind it only after the app's start-up, and answer a busy port or an unknown
    host with a log line and exit status 3; bound here, it is the command's one error line.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise Unavailable(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


async def serve(app: FastAPI, sock: socket.socket, settings: Settings) -> None:
    """Run on the bound `sock` until SIGTERM/SIGINT, then finish in-flight requests and return.
    Connections are bounded (connections.py): a head's time and size, how many are open."""
    http = bounded_http(settings.api_header_timeout_s, max_connections())
    config = uvicorn.Config(app, http=http, log_config=None, access_log=False)
    host, port = sock.getsockname()[:2]
    log.info("api.listening", host=host, port=port)  # the port the OS picked for --port 0
    await _GracefulServer(config).serve(sockets=[sock])
