"""What webhooks cost: 32 wallets end to end (distributed), without an endpoint and with one
subscribed to `transaction.confirmed` (a receiver in this process, on loopback), in one run.

Reports tx/s and CPU per confirmed transaction of each run, and the delivery lag of the
webhook run (receipt at the receiver minus the event's `created_at`) at p50 / p99. The two
runs alternate `--pairs` times (a single pair's runs differ by ±15 % on an idle machine, the
size of the effect measured) and the ratio is taken between the medians.

Run: .venv/bin/python -m bench.webhooks --requests 3200
"""

import argparse
import asyncio
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from statistics import median

import aiohttp
import asyncpg
from aiohttp import web

from bench.cluster import Running, run_shape
from bench.e2e import lifecycle, percentiles, submit_all, wait_confirmed
from bench.ports import serve_here
from bench.report import replace_section
from chainflow.infra.anvil import run_anvil

SETTINGS = {"CHAINFLOW_WEBHOOK_ALLOW_PRIVATE_URLS": "true"}  # the receiver is on loopback


@dataclass
class Result:
    label: str
    txs: int
    tx_per_s: float
    cpu_ms_per_tx: float
    postgres_ms_per_tx: float
    lag_ms: tuple[float, float] | None = None
    rows: str = ""


class Receiver:
    """Counts `transaction.confirmed` deliveries and their lag from the event's creation.

    `all_in` is set once `want` (0: not known yet) deliveries have come: with no `want`, the
    first delivery set it, the run stopped while the last blocks' deliveries were still on
    their way, and the ones in flight were read after the cluster had stopped, ~10 s late.
    """

    def __init__(self) -> None:
        self.lags_ms: list[float] = []
        self.ids: set[str] = set()
        self.want = 0
        self.all_in = asyncio.Event()

    def expect(self, count: int) -> None:
        self.want = count
        if len(self.ids) >= count:
            self.all_in.set()

    async def handle(self, request: web.Request) -> web.Response:
        envelope = await request.json()
        created = datetime.fromisoformat(envelope["created_at"].replace("Z", "+00:00"))
        if envelope["id"] not in self.ids:
            self.ids.add(envelope["id"])
            self.lags_ms.append((datetime.now(UTC) - created).total_seconds() * 1000)
            if self.want and len(self.ids) >= self.want:
                self.all_in.set()
        return web.Response(text="ok")


async def add_endpoint(run: Running, url: str) -> None:
    headers = {"Authorization": f"Bearer {run.token}"}
    body = {"url": url, "events": ["transaction.confirmed"]}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.post(f"{run.api_url}/v1/webhooks", json=body) as response,
    ):
        if response.status != 201:
            raise RuntimeError(f"webhook not created: {response.status} {await response.text()}")


async def one_run(
    wallets: int, per_wallet: int, folder: Path, *, hook: Receiver | None, hook_url: str
) -> Result:
    async with (
        run_anvil() as anvil,
        run_shape("distributed", anvil, wallets, folder, settings=SETTINGS) as run,
    ):
        if hook is not None:
            await add_endpoint(run, hook_url)
        cpu_before = run.cpu_seconds()
        _, errors = await submit_all(run, per_wallet, 64)
        n = wallets * per_wallet - errors
        await wait_confirmed(run.database_url, n, 900)
        if hook is not None:
            hook.expect(n)
            await asyncio.wait_for(hook.all_in.wait(), timeout=120)
        cpu_after = run.cpu_seconds()
        rows = await deliveries_written(run.database_url) if hook is not None else ""
        lags_ms = list(hook.lags_ms) if hook is not None else []  # made while the cluster ran
        span, *_ = await lifecycle(run.database_url)
    cpu = sum(cpu_after[k] - cpu_before.get(k, 0.0) for k in cpu_after if k != "client")
    postgres = cpu_after.get("postgres", 0.0) - cpu_before.get("postgres", 0.0)
    return Result(
        label="32 wallets, webhook on transaction.confirmed" if hook else "32 wallets, no webhook",
        txs=n,
        tx_per_s=n / span,
        cpu_ms_per_tx=cpu * 1000 / n,
        postgres_ms_per_tx=postgres * 1000 / n,
        lag_ms=percentiles(lags_ms) if lags_ms else None,
        rows=rows,
    )


async def deliveries_written(database_url: str) -> str:
    """Rows of webhook_deliveries inserted and updated, and the updates that were HOT (wrote
    no index entry), as PostgreSQL's statistics have them (each backend reports within ~1 s)."""
    if not database_url.startswith("postgresql"):
        return ""
    connection = await asyncpg.connect(database_url)
    try:
        row = await connection.fetchrow(
            "SELECT n_tup_ins, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
            " WHERE relname = 'webhook_deliveries'"
        )
    finally:
        await connection.close()
    if row is None:
        return ""
    ins, upd, hot = row
    return f"webhook_deliveries: {ins} inserted, {upd} updated, {hot} of them HOT"


async def main(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="cf-bench-webhooks-"))
    hooks: list[Receiver] = []  # the current run's receiver is the last

    async def handle(request: web.Request) -> web.Response:
        return await hooks[-1].handle(request)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = await serve_here(runner)  # bound at once: no other process can take it first
    plain: list[Result] = []
    hooked: list[Result] = []
    try:
        per_wallet = max(1, args.requests // args.wallets)
        for _ in range(args.pairs):
            plain.append(await one_run(args.wallets, per_wallet, folder, hook=None, hook_url=""))
            hooks.append(Receiver())
            url = f"http://127.0.0.1:{port}/hook"
            hooked.append(
                await one_run(args.wallets, per_wallet, folder, hook=hooks[-1], hook_url=url)
            )
    finally:
        await runner.cleanup()
    lines = table(plain, hooked)
    print("\n".join(lines), flush=True)
    if args.write:
        replace_section(Path(args.write), "webhooks", [f"Command: `{args.command}`", "", *lines])


def table(plain: Sequence[Result], hooked: Sequence[Result]) -> list[str]:
    """Each run (in the order they ran, alternating), then the medians and their ratios."""
    lines = [
        "| run | txs | tx/s | CPU ms per tx (all processes) | of which PostgreSQL "
        "| delivery lag p50 / p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for pair in zip(plain, hooked, strict=True):
        for r in pair:
            lag = "-" if r.lag_ms is None else f"{r.lag_ms[0]:.0f} / {r.lag_ms[1]:.0f}"
            lines.append(
                f"| {r.label} | {r.txs} | {r.tx_per_s:.0f} | {r.cpu_ms_per_tx:.2f} "
                f"| {r.postgres_ms_per_tx:.2f} | {lag} |"
            )
    tx_s = [median(r.tx_per_s for r in rows) for rows in (plain, hooked)]
    cpu = [median(r.cpu_ms_per_tx for r in rows) for rows in (plain, hooked)]
    pg = [median(r.postgres_ms_per_tx for r in rows) for rows in (plain, hooked)]
    lags = [r.lag_ms for r in hooked if r.lag_ms is not None]
    lag = f"{median(p50 for p50, _ in lags):.0f} / {median(p99 for _, p99 in lags):.0f} ms"
    lines += [
        "",
        f"Medians of {len(plain)} alternated pairs: no webhook {tx_s[0]:.0f} tx/s, "
        f"{cpu[0]:.2f} ms per tx; webhook {tx_s[1]:.0f} tx/s, {cpu[1]:.2f} ms per tx, "
        f"delivery lag p50 / p99 {lag if lags else '-'}.",
        f"With the webhook: tx/s x{tx_s[1] / tx_s[0]:.2f}, CPU per tx x{cpu[1] / cpu[0]:.2f} "
        f"(PostgreSQL's x{pg[1] / max(pg[0], 1e-9):.2f}).",
        *[r.rows for r in hooked if r.rows],
    ]
    return lines


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3200)
    parser.add_argument("--wallets", type=int, default=32)
    parser.add_argument("--pairs", type=int, default=3, help="alternated runs of each kind")
    parser.add_argument("--write", default="", help="update this markdown report")
    parser.add_argument("--command", default="./scripts/bench", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
