"""The tests' LocalStack whose port another process took between `free_port` and its gateway's
bind: LocalStack runs on without a gateway and says it is ready once the port is open (the
other process opened it), so before, the other server answered in its place. Now only its own
listener counts, and it starts again on a new port."""

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest
from aiohttp import web

from tests.support import localstack
from tests.support.processes import PortTaken, free_port, listens

pytestmark = pytest.mark.timeout(300)


@asynccontextmanager
async def _someone_else_healthy() -> AsyncIterator[int]:
    """Another server whose health answer is LocalStack's with KMS available."""

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"services": {"kms": "available"}})

    app = web.Application()
    app.router.add_get("/_localstack/health", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[-1][1]
    finally:
        await runner.cleanup()


@contextmanager
def _someone_else_silent() -> Iterator[int]:
    """Another socket on a port: it accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


async def test_another_server_answering_healthy_on_its_port_is_not_taken_for_it(
    tmp_path: Path,
) -> None:
    async with _someone_else_healthy() as taken:

        def run() -> None:
            with localstack.run_localstack(tmp_path, taken, timeout_s=60):
                pass

        with pytest.raises(PortTaken):
            await asyncio.to_thread(run)


def test_a_localstack_whose_port_was_taken_starts_on_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _someone_else_silent() as taken:
        picked = iter([taken])
        monkeypatch.setattr(localstack, "free_port", lambda: next(picked, None) or free_port())
        with localstack.run_localstack(tmp_path, timeout_s=60) as stack:
            assert stack.process is not None
            port = int(stack.url.rsplit(":", 1)[1])
            assert port != taken
            assert listens(stack.process.pid, port)
            assert "KeyMetadata" in stack.client().create_key(
                KeySpec="ECC_SECG_P256K1", KeyUsage="SIGN_VERIFY"
            )
