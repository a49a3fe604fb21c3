"""A TCP proxy in front of PostgreSQL that can lose the server's answer to a commit: the
statement is done and durable, the client only sees its connection drop."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass
class PgProxy:
    """Forwards every connection to `upstream`. Once `lose_commit_answer_after(marker)` is
    called, the first client message containing `COMMIT` that follows one containing `marker`
    reaches the server, and the server's answer to it is dropped with the connection."""

    upstream_host: str
    upstream_port: int
    port: int = 0
    marker: bytes | None = None
    answers_lost: int = 0
    _pairs: set[asyncio.StreamWriter] = field(default_factory=set)

    def lose_commit_answer_after(self, marker: bytes) -> None:
        self.marker = marker

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        self._pairs.update((writer, up_writer))
        seen = asyncio.Event()  # the marked statement went through on this connection
        cut = asyncio.Event()  # its COMMIT went through: lose the next answer

        async def client_to_server() -> None:
            while data := await reader.read(65536):
                if self.marker is not None and self.marker in data:
                    seen.set()
                up_writer.write(data)
                await up_writer.drain()
                if seen.is_set() and b"COMMIT" in data:
                    cut.set()

        async def server_to_client() -> None:
            while data := await up_reader.read(65536):
                if cut.is_set():
                    self.marker = None
                    self.answers_lost += 1
                    return
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.ensure_future(pump()) for pump in (client_to_server, server_to_client)]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for end in (writer, up_writer):
                end.close()
                self._pairs.discard(end)
            with contextlib.suppress(Exception):
                await asyncio.gather(*tasks, return_exceptions=True)


@asynccontextmanager
async def pg_proxy(upstream_host: str, upstream_port: int) -> AsyncIterator[PgProxy]:
    """A proxy on a free loopback port until the block ends."""
    proxy = PgProxy(upstream_host, upstream_port)

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            await proxy._serve(reader, writer)

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    proxy.port = server.sockets[0].getsockname()[1]
    try:
        yield proxy
    finally:
        server.close()
        for end in list(proxy._pairs):
            end.close()
        await server.wait_closed()
