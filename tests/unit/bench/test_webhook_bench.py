"""bench.webhooks measures every delivery of its run, and the cluster it stops is still
answered while it stops (its receiver lives on the benchmark's event loop)."""

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import aiohttp
from aiohttp import web
from bench.cluster import stop_all
from bench.ports import serve_here
from bench.webhooks import Receiver, Result, table


@asynccontextmanager
async def _serving(
    route: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", route, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = await serve_here(runner)
    try:
        yield f"http://127.0.0.1:{port}{route}"
    finally:
        await runner.cleanup()


async def _deliver(http: aiohttp.ClientSession, url: str, event_id: str) -> None:
    envelope = {"id": event_id, "created_at": datetime.now(UTC).isoformat()}
    async with http.post(url, json=envelope) as response:
        assert response.status == 200


async def test_the_receiver_is_not_all_in_before_it_knows_how_many_to_expect() -> None:
    """With `want` still 0, the first delivery set `all_in`: the run stopped while the last
    blocks' deliveries were on their way, and those read after the stop counted ~10 s late."""
    hook = Receiver()
    async with _serving("/hook", hook.handle) as url, aiohttp.ClientSession() as http:
        await _deliver(http, url, "evt_1")
        await _deliver(http, url, "evt_2")
        assert not hook.all_in.is_set()
        hook.expect(3)
        assert not hook.all_in.is_set()
        await _deliver(http, url, "evt_3")
        assert hook.all_in.is_set()
        assert len(hook.lags_ms) == 3


# A process that, told to stop, asks the benchmark's loop for an answer first (as a worker's
# last webhook sends do) and exits 0 only if it gets one within 5 s.
_CHILD = """
import signal, sys, urllib.request
def stop(*_):
    try:
        urllib.request.urlopen(sys.argv[1], timeout=5).read()
    except Exception:
        sys.exit(3)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
while True:
    signal.pause()
"""


async def test_stopping_the_cluster_leaves_the_event_loop_answering() -> None:
    """A blocking wait for the processes held the loop: the receiver answered none of the
    workers' last sends, which timed out (10 s) and were then read as deliveries 10 s late."""

    async def answer(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async with _serving("/last", answer) as url:
        proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once
            [sys.executable, "-c", _CHILD, url], stdout=subprocess.PIPE
        )
        assert proc.stdout is not None
        assert await asyncio.to_thread(proc.stdout.readline) == b"ready\n"
        await stop_all([proc], timeout_s=30)
        proc.stdout.close()
    assert proc.returncode == 0


def test_the_ratio_is_taken_between_the_medians_of_alternated_runs() -> None:
    """One pair's runs differ by as much as the webhook's cost: a single noisy no-webhook run
    (here 1.5) must not decide the ratio."""
    plain = [Result("plain", 100, tx, cpu, 0.5) for tx, cpu in ((900, 2.0), (700, 1.5), (800, 2.2))]
    hooked = [
        Result("hooked", 100, tx, cpu, 0.6, (1000.0 + cpu, 3000.0))
        for tx, cpu in ((850, 2.4), (700, 2.3), (760, 2.2))
    ]
    lines = table(plain, hooked)
    assert len([line for line in lines if line.startswith("| plain")]) == 3
    assert lines[-1] == "With the webhook: tx/s x0.95, CPU per tx x1.15 (PostgreSQL's x1.20)."
    assert "delivery lag p50 / p99 1002 / 3000 ms" in lines[-2]
