"""End to end, API request → `confirmed`, against the same-run baselines, on one machine.

For each wallet count: the three baselines of bench/baselines.py, then Chainflow distributed
(PostgreSQL + Redis, 1 api + 2 workers) and embedded (`chainflow dev`, SQLite), each on a fresh
anvil and a fresh database. Then the RSS of api and workers while 100,000 requests are queued.

Run: ./scripts/bench                      (all of it; writes docs/benchmarks.md)
     .venv/bin/python -m bench.e2e --requests 1000 --wallets 8 --shapes distributed
"""

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import func, insert, select

from bench import baselines
from bench.cluster import Running, run_shape
from bench.report import replace_section
from chainflow.domain.transactions.models import Transaction, TxAttempt, TxEventRow, TxKind
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.wallets.models import Wallet
from chainflow.infra.anvil import run_anvil
from chainflow.infra.db.engine import create_engine, create_sessionmaker
from chainflow.infra.db.uow import unit_of_work

SINK = "0x000000000000000000000000000000000000dEaD"


@dataclass
class Figures:
    label: str
    txs: int
    seconds: float
    tx_per_s: float
    queued_to_submitted_ms: tuple[float, float] | None = None  # p50, p99
    submitted_to_confirmed_ms: tuple[float, float] | None = None
    enqueue_ms: tuple[float, float] | None = None
    peak_rss_mb: dict[str, float] | None = None
    cpu_ms_per_tx: dict[str, float] | None = None
    errors: int = 0
    replaced: int | None = None  # requests signed more than once (a bump freed them)


def percentiles(values: Sequence[float]) -> tuple[float, float]:
    if len(values) < 2:
        only = values[0] if values else 0.0
        return only, only
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[98]


async def submit_all(
    run: Running, per_wallet: int, concurrency: int, batch: int = 0
) -> tuple[list[float], int]:
    """POST every request, `concurrency` at a time (with `batch`, POST /v1/transactions/batch
    of that many, `concurrency // 16` at a time), round the API processes; per-call latency in
    ms, and requests that were not accepted."""
    bodies: list[dict[str, Any]] = [
        {"chain_id": 31337, "wallet": address, "to": SINK, "value": str(i + 1)}
        for i in range(per_wallet)
        for address in run.addresses
    ]
    calls: list[tuple[str, dict[str, Any]]]
    if batch:
        calls = [
            ("/v1/transactions/batch", {"transactions": bodies[i : i + batch]})
            for i in range(0, len(bodies), batch)
        ]
        concurrency = max(1, concurrency // 16)
    else:
        calls = [("/v1/transactions", body) for body in bodies]
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    errors = 0
    headers = {"Authorization": f"Bearer {run.token}"}
    limits = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(headers=headers, connector=limits) as http:

        async def one(base: str, path: str, body: dict[str, Any]) -> None:
            nonlocal errors
            async with gate:
                started = time.perf_counter()
                async with http.post(f"{base}{path}", json=body) as response:
                    await response.read()
                    if response.status != 202:
                        errors += len(body.get("transactions", [body]))
                latencies.append((time.perf_counter() - started) * 1000)

        bases = run.api_urls  # several API processes: the calls go round them
        await asyncio.gather(
            *(one(bases[i % len(bases)], path, body) for i, (path, body) in enumerate(calls))
        )
    return latencies, errors


async def wait_confirmed(database_url: str, count: int, timeout_s: float) -> None:
    engine = create_engine(database_url)
    sessionmaker = create_sessionmaker(engine)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            async with unit_of_work(sessionmaker) as session:
                query = select(func.count()).where(Transaction.status == TxStatus.CONFIRMED)
                if int(await session.scalar(query) or 0) >= count:
                    return
            await asyncio.sleep(0.25)  # polling the database
    finally:
        await engine.dispose()
    raise RuntimeError(f"not all {count} requests confirmed within {timeout_s} s")


async def lifecycle(database_url: str) -> tuple[float, list[float], list[float], int]:
    """(first queued → last confirmed seconds, queued→submitted ms, submitted→confirmed ms,
    requests with more than one attempt)."""
    engine = create_engine(database_url)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as session:
            rows = (
                await session.execute(select(TxEventRow.tx_id, TxEventRow.to_status, TxEventRow.at))
            ).all()
            several = select(TxAttempt.tx_id).group_by(TxAttempt.tx_id).having(func.count() > 1)
            replaced = int(
                await session.scalar(select(func.count()).select_from(several.subquery())) or 0
            )
    finally:
        await engine.dispose()
    firsts: dict[str, dict[uuid.UUID, datetime]] = {"queued": {}, "submitted": {}, "confirmed": {}}
    for tx_id, status, at in rows:
        if status in firsts:
            firsts[status].setdefault(tx_id, at)
    queued, submitted, confirmed = firsts["queued"], firsts["submitted"], firsts["confirmed"]
    span = (max(confirmed.values()) - min(queued.values())).total_seconds()
    q2s = [(submitted[t] - queued[t]).total_seconds() * 1000 for t in submitted if t in queued]
    s2c = [
        (confirmed[t] - submitted[t]).total_seconds() * 1000 for t in confirmed if t in submitted
    ]
    return span, q2s, s2c, replaced


async def chainflow_run(
    shape: str,
    wallets: int,
    per_wallet: int,
    folder: Path,
    concurrency: int,
    workers: int = 2,
    batch: int = 0,
) -> Figures:
    async with (
        run_anvil() as anvil,
        run_shape(shape, anvil, wallets, folder, workers=workers) as run,
    ):
        stop = asyncio.Event()
        sampler = asyncio.create_task(run.sample_rss(stop))
        cpu_before = run.cpu_seconds()
        latencies, errors = await submit_all(run, per_wallet, concurrency, batch)
        await wait_confirmed(run.database_url, wallets * per_wallet - errors, 900)
        cpu_after = run.cpu_seconds()
        stop.set()
        await sampler
        span, q2s, s2c, replaced = await lifecycle(run.database_url)
    n = wallets * per_wallet - errors
    return Figures(
        label=f"chainflow {shape}" + (f", batches of {batch}" if batch else ""),
        txs=n,
        seconds=span,
        tx_per_s=n / span,
        queued_to_submitted_ms=percentiles(q2s),
        submitted_to_confirmed_ms=percentiles(s2c),
        enqueue_ms=percentiles(latencies),
        peak_rss_mb=dict(run.peak_rss_mb),
        cpu_ms_per_tx={
            name: (cpu_after[name] - cpu_before.get(name, 0.0)) * 1000 / n
            for name in cpu_after
            if name != "client"
        },
        errors=errors,
        replaced=replaced,
    )


async def baseline_runs(wallets: int, per_wallet: int, naive_limit_s: float) -> list[Figures]:
    runs = [
        lambda url, keys: baselines.presigned_batches(url, keys, per_wallet),
        lambda url, keys: baselines.web3_async_local_nonce(url, keys, per_wallet),
        lambda url, keys: baselines.web3_naive_loop(url, keys, per_wallet, naive_limit_s),
    ]
    found = []
    for run in runs:
        result = await baselines.on_fresh_anvil(run, wallets)
        p50, p99 = result.p50_ms, result.p99_ms
        found.append(
            Figures(
                label=result.name,
                txs=result.txs,
                seconds=result.seconds,
                tx_per_s=result.tx_per_s,
                submitted_to_confirmed_ms=(p50, p99)
                if p50 is not None and p99 is not None
                else None,
            )
        )
    return found


async def queued_rss(folder: Path, queued: int) -> dict[str, tuple[float, float]]:
    """RSS (MB) of each process idle, then at its peak over 30 s with `queued` requests waiting
    (their wallet has no funds, so they stay queued while the workers keep looking at them)."""
    async with (
        run_anvil() as anvil,
        run_shape("distributed", anvil, 1, folder, fund=False) as run,
    ):
        stop = asyncio.Event()
        sampler = asyncio.create_task(run.sample_rss(stop))
        await asyncio.sleep(3)  # idle baseline
        idle = {name: values[-1] for name, values in run.rss_mb.items()}
        run.peak_rss_mb.clear()
        await bulk_queue(run, queued)
        await asyncio.sleep(30)  # the measurement window
        stop.set()
        await sampler
        return {name: (idle[name], run.peak_rss_mb.get(name, 0.0)) for name in idle}


async def bulk_queue(run: Running, count: int) -> None:
    engine = create_engine(run.database_url)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as session:
            wallet = (await session.scalars(select(Wallet))).one()
            for start in range(0, count, 5000):
                ids = [uuid.uuid4() for _ in range(min(5000, count - start))]
                await session.execute(
                    insert(Transaction),
                    [
                        {
                            "id": tx_id,
                            "kind": TxKind.REQUEST,
                            "chain_id": 31337,
                            "wallet_id": wallet.id,
                            "from_address": wallet.address,
                            "to_address": SINK,
                            "value_wei": 1,
                            "data": b"",
                            "status": TxStatus.QUEUED,
                        }
                        for tx_id in ids
                    ],
                )
                await session.execute(
                    insert(TxEventRow), [{"tx_id": t, "to_status": "queued"} for t in ids]
                )
    finally:
        await engine.dispose()


def _ms(pair: tuple[float, float] | None) -> str:
    return "-" if pair is None else f"{pair[0]:.0f} / {pair[1]:.0f}"


def table(rows: list[Figures]) -> list[str]:
    lines = [
        "| run | txs | s | tx/s | queued→submitted p50/p99 ms | submitted→confirmed p50/p99 ms "
        "| API enqueue p50/p99 ms | peak RSS MB | errors | re-signed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rss = ", ".join(f"{k} {v:.0f}" for k, v in (r.peak_rss_mb or {}).items()) or "-"
        lines.append(
            f"| {r.label} | {r.txs} | {r.seconds:.1f} | {r.tx_per_s:.0f} "
            f"| {_ms(r.queued_to_submitted_ms)} | {_ms(r.submitted_to_confirmed_ms)} "
            f"| {_ms(r.enqueue_ms)} | {rss} | {r.errors} "
            f"| {'-' if r.replaced is None else r.replaced} |"
        )
    return lines


def ratios(rows: list[Figures]) -> list[str]:
    ours = [r for r in rows if r.label.startswith("chainflow")]
    theirs = [r for r in rows if not r.label.startswith("chainflow")]
    return [
        f"- {a.label} / {b.label}: {a.tx_per_s / b.tx_per_s:.2f}x" for a in ours for b in theirs
    ]


async def main(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="cf-bench-"))
    report = [
        f"Machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
    ]
    for wallets in args.wallets:
        per_wallet = max(1, args.requests // wallets)
        print(f"== {wallets} wallets x {per_wallet} requests", flush=True)
        rows = await baseline_runs(wallets, per_wallet, args.naive_limit_s)
        for shape in args.shapes:
            for batch in sorted({0, args.batch}):
                rows.append(
                    await chainflow_run(
                        shape, wallets, per_wallet, folder, args.concurrency, args.workers, batch
                    )
                )
        lines = [f"### {wallets} wallet(s), {wallets * per_wallet} requests", "", *table(rows)]
        lines += ["", "Ratios (tx/s):", *ratios(rows), "", "CPU per confirmed tx (ms):"]
        lines += [
            f"- {r.label}: "
            + ", ".join(f"{k} {v:.2f}" for k, v in r.cpu_ms_per_tx.items())
            + f"; total {sum(r.cpu_ms_per_tx.values()):.2f}"
            for r in rows
            if r.cpu_ms_per_tx
        ]
        lines.append("")
        print("\n".join(lines), flush=True)
        report += lines
    if args.queued:
        rss = await queued_rss(folder, args.queued)
        lines = [f"### RSS with {args.queued:,} requests queued (30 s window)", ""]
        lines += [
            f"- {k}: idle {a:.0f} MB, peak {b:.0f} MB, growth {b - a:+.0f} MB"
            for k, (a, b) in rss.items()
        ]
        print("\n".join(lines), flush=True)
        report += [*lines, ""]
    if args.write:
        replace_section(Path(args.write), "e2e", [f"Command: `{args.command}`", "", *report])


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument(
        "--wallets", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32]
    )
    parser.add_argument(
        "--shapes", type=lambda s: s.split(","), default=["distributed", "embedded"]
    )
    parser.add_argument("--concurrency", type=int, default=64, help="API requests in flight")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (distributed)")
    parser.add_argument(
        "--batch", type=int, default=0, help="also submit through /v1/transactions/batch"
    )
    parser.add_argument("--naive-limit-s", type=float, default=20.0)
    parser.add_argument("--queued", type=int, default=100_000, help="0 skips the RSS run")
    parser.add_argument("--write", default="", help="update this markdown report")
    parser.add_argument("--command", default="./scripts/bench", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
