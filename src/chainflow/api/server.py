"""Serve the API with uvicorn; a SIGTERM or SIGINT drains requests and exits with status 0."""

from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI


class _GracefulServer(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            # uvicorn re-raises the captured signal after a graceful shutdown, which would end
            # the process with status -15; a drained shutdown is a success, so exit normally.
            self._captured_signals.clear()


async def serve(app: FastAPI, *, host: str, port: int) -> None:
    """Run until SIGTERM/SIGINT, then finish in-flight requests and return."""
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False)
    await _GracefulServer(config).serve()
