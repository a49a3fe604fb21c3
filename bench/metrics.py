"""What the metrics cost (issue 18): CPU per confirmed transaction with metrics on vs off in the
same run (distributed shape, alternating on/off pairs), and how long the API's scrape of 1,000
lanes takes when it reads them from the database every time.

Run: .venv/bin/python -m bench.metrics [--requests 8000 --wallets 8 --pairs 5 --lanes 1000]

8,000 requests a run, not 2,000 (item 52): at 2,000 each side's runs spread by -23/+18 % on a
shared 2-core machine, more than the cost; at 8,000 by -10/+14 %. The in-process figure of
bench/metric_calls.py is printed beside it: the hot paths' calls alone, steady to ~1 µs.
"""

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.cluster import run_shape
from bench.e2e import submit_all, wait_confirmed
from bench.metric_calls import cost_us
from bench.report import replace_section
from chainflow.infra.anvil import run_anvil

_TARGET_CPU_PERCENT = 5.0
_TARGET_SCRAPE_MS = 100.0


async def cpu_ms_per_tx(folder: Path, *, wallets: int, per_wallet: int, enabled: bool) -> float:
    """Chainflow's own CPU (api + workers) per confirmed request, metrics on or off; with
    metrics on, the API is scraped every second as Prometheus would (the workers keep their
    metrics but serve none over HTTP here: bench/cluster.py `run_shape`)."""
    settings = {"CHAINFLOW_METRICS_ENABLED": "true" if enabled else "false"}
    async with (
        run_anvil() as anvil,
        run_shape("distributed", anvil, wallets, folder, settings=settings) as run,
    ):
        stop = asyncio.Event()
        if enabled:
            # The first scrape of a process compiles the lane query and warms the route (~20-30
            # ms of CPU once, measured 2026-12-07): a cost per process, not per transaction,
            # which spread over 2,000 requests read as ~1.5 % (docs/performance.md item 52).
            await _scrape(run.api_url)
        scraper = asyncio.create_task(_scrape_every_s(run.api_url, stop)) if enabled else None
        before = run.cpu_seconds()
        _, errors = await submit_all(run, per_wallet, concurrency=64)
        confirmed = wallets * per_wallet - errors
        await wait_confirmed(run.database_url, confirmed, 600)
        after = run.cpu_seconds()
        stop.set()
        if scraper is not None:
            await scraper
    ours = [name for name in after if name.startswith(("api", "worker"))]
    return sum(after[n] - before.get(n, 0.0) for n in ours) * 1000 / confirmed


async def _scrape(api_url: str) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{api_url}/metrics") as response:
        await response.read()


async def _scrape_every_s(api_url: str, stop: asyncio.Event) -> None:
    async with aiohttp.ClientSession() as http:
        while not stop.is_set():
            async with http.get(f"{api_url}/metrics") as response:
                await response.read()
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                continue


async def scrape_ms(folder: Path, *, lanes: int, scrapes: int) -> tuple[float, float, int]:
    """(median, max) ms of GET /metrics on an API with `lanes` lanes, the lanes read from the
    database on every scrape (CHAINFLOW_METRICS_CACHE_S=0), and the lane series it returned."""
    settings = {"CHAINFLOW_METRICS_CACHE_S": "0"}
    async with (
        run_anvil() as anvil,
        run_shape(
            "distributed", anvil, lanes, folder, workers=0, fund=False, settings=settings
        ) as run,
        aiohttp.ClientSession() as http,
    ):
        took: list[float] = []
        series = 0
        for _ in range(scrapes):
            started = time.perf_counter()
            async with http.get(f"{run.api_url}/metrics") as response:
                text = await response.text()
            took.append((time.perf_counter() - started) * 1000)
            series = text.count("\nchainflow_lane_queued{")
    return statistics.median(took), max(took), series


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as folder:
        median_ms, max_ms, series = await scrape_ms(Path(folder), lanes=args.lanes, scrapes=20)
        per_wallet = args.requests // args.wallets
        on: list[float] = []
        off: list[float] = []
        for _ in range(args.pairs):  # alternating, so that drift hits both sides alike
            for enabled, found in ((True, on), (False, off)):
                found.append(
                    await cpu_ms_per_tx(
                        Path(folder), wallets=args.wallets, per_wallet=per_wallet, enabled=enabled
                    )
                )
    calls_us, _, _ = await cost_us(transactions=20000, runs=7)
    cost = (statistics.median(on) / statistics.median(off) - 1) * 100
    # Runs of one tree spread by ±10 % (docs/benchmarks.md), as much as the cost measured: the
    # pairs' own ratios and each side's spread say how far the figure can be trusted.
    paired = statistics.median((a / b - 1) * 100 for a, b in zip(on, off, strict=True))
    lines = [
        f"- scrape of {series} lanes (read from the database each time): median "
        f"{median_ms:.1f} ms, max {max_ms:.1f} ms (target < {_TARGET_SCRAPE_MS:.0f} ms)",
        f"- CPU per confirmed tx, api + workers, {args.requests} requests on {args.wallets} "
        f"wallets: metrics on {[round(v, 2) for v in on]} ms, off {[round(v, 2) for v in off]} "
        f"ms; cost {cost:+.1f} % (medians; target < {_TARGET_CPU_PERCENT:.0f} %); median of "
        f"the pairs' own ratios {paired:+.1f} %; spread on {_spread(on)}, off {_spread(off)}",
        f"- the metric calls of one transaction alone, in-process (bench/metric_calls.py): "
        f"{calls_us:.1f} µs, {calls_us / 10 / statistics.median(off):.1f} % of the off median "
        f"(JSON-RPC requests and scrapes left out)",
    ]
    print("\n".join(lines))
    if args.write:
        replace_section(Path(args.write), "metrics-cost", lines)


def _spread(values: list[float]) -> str:
    """Lowest and highest run against the median, in %."""
    middle = statistics.median(values)
    return f"{(min(values) / middle - 1) * 100:+.0f}/{(max(values) / middle - 1) * 100:+.0f} %"


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=8000)
    parser.add_argument("--wallets", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--lanes", type=int, default=1000)
    parser.add_argument("--write", default="", help="put the figures in this markdown file")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
