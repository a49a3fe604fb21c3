"""The API under a fixed submission rate: does it hold `--rate` requests/s for `--seconds`?

Distributed shape (PostgreSQL + Redis), `--apis` API processes behind the client's round robin,
2 workers draining to anvil meanwhile. An open-loop client sends at the target rate whatever the
answers; it reports the sending rate, the answers by status (202 accepted; 503 `overloaded`
refused by admission control), the accepted rate, and latency p50/p99/max. With
`--confirmed`, it then waits for every accepted request to be confirmed and reports request →
confirmed p50/p99/max: from the client's send to the `confirmed` status change (the same host's
clock): issue 17's latency at an offered rate both trees sustain, rather than a burst's, whose
tail is the queue the burst builds.

Run: .venv/bin/python -m bench.api_load [--rate 500] [--seconds 60] [--wallets 32] [--apis 1]
     [--confirmed]
"""

import argparse
import asyncio
import itertools
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
import orjson
from sqlalchemy import select

from bench.cluster import run_shape
from bench.e2e import wait_confirmed
from bench.report import replace_section
from chainflow.domain.transactions.models import TxEventRow
from chainflow.infra.anvil import run_anvil
from chainflow.infra.db.engine import create_engine, create_sessionmaker
from chainflow.infra.db.uow import unit_of_work

SINK = "0x000000000000000000000000000000000000dEaD"


async def load(
    urls: list[str],
    token: str,
    addresses: list[str],
    rate: float,
    seconds: float,
    sent: dict[str, float] | None = None,
) -> tuple[list[float], Counter[str], float]:
    """Open loop: request i starts at i / rate, answered or not. `sent`, if given, gets each
    accepted request's id and its send time (`time.time()`).

    Returns: latencies (ms), answers by status (or error class), achieved rate."""
    latencies: list[float] = []
    answers: Counter[str] = Counter()
    total = int(rate * seconds)
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=0)
    targets = itertools.cycle(urls)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as http:

        async def one(i: int, url: str) -> None:
            body = {"chain_id": 31337, "wallet": addresses[i % len(addresses)], "to": SINK}
            started = time.perf_counter()
            wall = time.time()
            try:
                async with http.post(f"{url}/v1/transactions", json=body) as response:
                    payload = await response.read()
                    if sent is not None and response.status == 202:
                        sent[str(orjson.loads(payload)["id"])] = wall
                    code = ""
                    if response.status >= 400:
                        code = " " + str(orjson.loads(payload).get("code", ""))
                    answers[f"{response.status}{code}"] += 1
                    if response.status != 202:
                        answers[f"second {int(i / rate)}"] += 1
            except aiohttp.ClientError as exc:
                answers[type(exc).__name__] += 1
            latencies.append((time.perf_counter() - started) * 1000)

        tasks = []
        begin = time.perf_counter()
        for i in range(total):
            delay = begin + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # the open-loop schedule
            elif delay < -0.05:  # this client fell behind its own schedule
                answers[f"late {int(i / rate)}"] += 1
            tasks.append(asyncio.create_task(one(i, next(targets))))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - begin
    return latencies, answers, total / elapsed


async def confirmed_ms(database_url: str, sent: dict[str, float]) -> list[float]:
    """Each sent request's send → `confirmed` status change, in ms."""
    await wait_confirmed(database_url, len(sent), 300)
    engine = create_engine(database_url)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as session:
            query = select(TxEventRow.tx_id, TxEventRow.at).where(
                TxEventRow.to_status == "confirmed"
            )
            rows = (await session.execute(query)).all()
    finally:
        await engine.dispose()
    first: dict[str, float] = {}
    for tx_id, at in rows:
        first.setdefault(str(tx_id), at.timestamp())
    return [(first[i] - wall) * 1000 for i, wall in sent.items() if i in first]


async def main(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="cf-load-"))
    async with (
        run_anvil() as anvil,
        run_shape(
            "distributed", anvil, args.wallets, folder, apis=args.apis, workers=args.workers
        ) as run,
    ):
        urls = run.api_urls
        spy = None
        if args.py_spy:  # profile the first API process for the whole load
            pid = str(next(iter(run.procs.values())).pid)
            spy = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).parent / "py-spy"),
                *("record", "-p", pid, "-d", str(int(args.seconds)), "-f", "raw"),
                *("-o", args.py_spy, "--nonblocking"),
                stdout=asyncio.subprocess.DEVNULL,
            )
        stop = asyncio.Event()
        sampler = asyncio.create_task(run.sample_rss(stop))
        cpu_before = run.cpu_seconds()
        sent: dict[str, float] | None = {} if args.confirmed else None
        latencies, answers, achieved = await load(
            urls, run.token, run.addresses, args.rate, args.seconds, sent
        )
        cpu_after = run.cpu_seconds()
        stop.set()
        await sampler
        if spy is not None:
            await spy.wait()
        to_confirmed = await confirmed_ms(run.database_url, sent) if sent is not None else []
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    by_status = ", ".join(
        f"{k}: {v}" for k, v in sorted(answers.items()) if not k.startswith(("second", "late"))
    )
    seconds = sorted(int(k.split()[1]) for k in answers if k.startswith("second"))
    late = sorted(int(k.split()[1]) for k in answers if k.startswith("late"))
    if late:
        print(f"the client fell >50 ms behind its schedule in second(s) {late[:20]}")
    refused_in = f"; refusals in second(s) {seconds[:20]} of the run" if seconds else ""
    rss = ", ".join(f"{k} {v:.0f} MB" for k, v in run.peak_rss_mb.items())
    per_request = ", ".join(
        f"{name} {(cpu_after[name] - spent) * 1000 / max(len(latencies), 1):.2f}"
        for name, spent in cpu_before.items()
        if name in cpu_after
    )
    line = (
        f"target {args.rate:.0f} req/s for {args.seconds:.0f} s, {args.apis} api + "
        f"{args.workers} worker process(es): "
        f"sent {achieved:.0f} req/s, {len(latencies)} requests, answers {by_status}, "
        f"accepted {answers['202'] / args.seconds:.0f} req/s; "
        f"enqueue p50 {cuts[49]:.1f} ms, p99 {cuts[98]:.1f} ms, max {max(latencies):.0f} ms; "
        f"peak RSS {rss}; CPU ms per request: {per_request}{refused_in}"
    )
    if to_confirmed:
        done = statistics.quantiles(to_confirmed, n=100, method="inclusive")
        line += (
            f"; request → confirmed ({len(to_confirmed)}) p50 {done[49]:.0f} ms, "
            f"p99 {done[98]:.0f} ms, max {max(to_confirmed):.0f} ms"
        )
    print(line)
    if args.write:
        command = " ".join(["python -m bench.api_load", *sys.argv[1:]])
        replace_section(Path(args.write), args.section, [f"`{command}`:", "", line])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--wallets", type=int, default=32)
    parser.add_argument("--apis", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="0: the API alone")
    parser.add_argument("--write", default="", help="put the result in this markdown file")
    parser.add_argument("--section", default="api-load", help="its section name there")
    parser.add_argument(
        "--confirmed", action="store_true", help="also request → confirmed latency (needs workers)"
    )
    parser.add_argument("--py-spy", default="", help="write a py-spy raw profile of api #1 here")
    asyncio.run(main(parser.parse_args()))
