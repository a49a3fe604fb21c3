"""What one worker's webhook loop costs per delivery, alone: its process's CPU and
PostgreSQL's, with nothing else of Chainflow running (bench.webhooks measures a whole cluster,
where a run's CPU varies by ±10 % on a shared machine, more than a delivery's share of it).

Another process appends `transaction.*` events (5 per transaction, as status changes do, one
of them `transaction.confirmed`) at `--rate` transactions a second and sequences them; a third
answers 200 to every POST; this one runs `run_webhooks` as a worker does, with one endpoint on
`transaction.confirmed`, until every delivery has succeeded. PostgreSQL's CPU counts the
producer's statements too (the same in every run). `PYTHONPATH=<other checkout>/src` measures
another version of the loop.

Run: .venv/bin/python -m bench.webhook_loop --transactions 3000 --rate 400
"""

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import asyncpg
import uvloop
from aiohttp import web

from bench.cluster import _server_processes, database, server_pids
from bench.ports import serve_here
from chainflow.core.logging import configure_logging
from chainflow.core.settings import Settings
from chainflow.domain.events import append, sequence_pending
from chainflow.domain.webhooks import service
from chainflow.domain.webhooks.schemas import WebhookCreate
from chainflow.infra.db.engine import create_engine, create_sessionmaker
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.signing.keystore import MasterKey
from chainflow.workers.webhooks import (
    WebhookPorts,
    delivery_config,
    new_webhook_http,
    run_webhooks,
)

STATUSES = ("queued", "signed", "submitted", "mined", "confirmed")


def _snapshot(tx: uuid.UUID, status: str) -> dict[str, object]:
    """About a confirmed transaction's event data (~1 KB)."""
    hash_ = "0x" + "ab" * 32
    return {
        "transaction": {
            "id": str(tx),
            "chain_id": 31337,
            "wallet_id": str(uuid.UUID(int=tx.int ^ 1)),
            "from": "0x" + "12" * 20,
            "to": "0x" + "34" * 20,
            "value": "1000",
            "data": "0x",
            "status": status,
            "nonce": 12,
            "hash": hash_,
            "cancel_requested": False,
            "attempts": [{"hash": hash_, "nonce": 12, "max_fee_per_gas": "2000000000"}],
            "receipt": {"block_number": 123, "block_hash": hash_, "gas_used": "21000"},
            "confirmations": 1,
            "error": None,
            "valid_until": None,
            "created_at": "2026-12-06T15:12:57.123456Z",
            "updated_at": "2026-12-06T15:12:58.123456Z",
        },
        "previous_status": "mined",
    }


async def produce(url: str, transactions: int, rate: float) -> None:
    """Append every status change of `transactions` transactions, `rate` a second in 50 ms
    steps, and sequence them."""
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)
    step_s, done = 0.05, 0
    started = time.monotonic()
    while done < transactions:
        due = min(transactions, int((time.monotonic() - started) * rate) + 1)
        async with unit_of_work(sessionmaker) as session:
            for _ in range(due - done):
                tx = uuid.uuid4()
                for status in STATUSES:
                    data = _snapshot(tx, status)
                    append(session, f"transaction.{status}", data=data, tx_id=tx)  # type: ignore[arg-type]
        done = due
        async with unit_of_work(sessionmaker) as session:
            while await sequence_pending(session):
                pass
        await asyncio.sleep(step_s)
    await engine.dispose()


async def receive() -> None:
    """Answer every webhook; the port, picked by the OS at bind, goes to stdout first."""
    app = web.Application()

    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_post("/hook", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    print(await serve_here(runner), flush=True)
    await asyncio.Event().wait()


def _postgres_cpu_s(postmaster: int) -> float:
    total = 0.0
    for i, proc in enumerate(_server_processes(postmaster)):
        with contextlib.suppress(Exception):
            t = proc.cpu_times()
            total += t.user + t.system + (t.children_user + t.children_system if i == 0 else 0)
    return total


async def measure(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="cf-bench-hookloop-"))
    me = [sys.executable, "-m", "bench.webhook_loop"]
    receiver = subprocess.Popen([*me, "--receive"], stdout=subprocess.PIPE)  # noqa: ASYNC220
    try:
        assert receiver.stdout is not None
        port = int(await asyncio.to_thread(receiver.stdout.readline))  # once it listens
        async with database("distributed", folder) as url:
            await _run(args, url, port, me)
    finally:
        receiver.terminate()
        receiver.wait()
        if receiver.stdout is not None:
            receiver.stdout.close()


async def _run(args: argparse.Namespace, url: str, port: int, me: Sequence[str]) -> None:
    configure_logging(json_format=True)  # as a worker logs (to stderr: 2>/dev/null)
    settings = Settings(webhook_allow_private_urls=True)
    master = MasterKey.generate()
    engine = create_engine(url, pre_ping=False)  # as the workers' engine
    sessionmaker = create_sessionmaker(engine)
    body = WebhookCreate.model_validate(
        {"url": f"http://127.0.0.1:{port}/hook", "events": ["transaction.confirmed"]}
    )
    async with unit_of_work(sessionmaker) as session:
        await service.create_endpoint(session, body, master=master)
    http = new_webhook_http(settings)
    ports = WebhookPorts(
        sessionmaker=sessionmaker, http=http, config=delivery_config(settings, master)
    )
    if args.min_gap_s is not None:
        ports = replace(ports, min_gap_s=args.min_gap_s)
    stop = asyncio.Event()
    loop_task = asyncio.create_task(run_webhooks(ports, stop))
    await asyncio.sleep(1)  # the loop's first turns, the pool's connections
    load = os.getloadavg()[0]
    postmaster = (await server_pids())["postgres"]
    cpu0, pg0, t0 = time.process_time(), _postgres_cpu_s(postmaster), time.monotonic()
    producer = subprocess.Popen(  # noqa: ASYNC220
        [*me, "--produce", url, "--transactions", str(args.transactions), "--rate", str(args.rate)]
    )
    admin = await asyncpg.connect(url)
    try:
        while True:
            done = await admin.fetchval(
                "SELECT count(*) FROM webhook_deliveries WHERE status = 'succeeded'"
            )
            if done >= args.transactions:
                break
            await asyncio.sleep(0.5)
    finally:
        await admin.close()
    cpu1, pg1, t1 = time.process_time(), _postgres_cpu_s(postmaster), time.monotonic()
    producer.wait()
    stop.set()
    await loop_task
    await http.close()
    await engine.dispose()
    n = args.transactions
    print(
        f"{n} deliveries in {t1 - t0:.1f} s, load {load:.1f}: webhook loop "
        f"{(cpu1 - cpu0) * 1000 / n:.3f} ms CPU per delivery, PostgreSQL (with the producer) "
        f"{(pg1 - pg0) * 1000 / n:.3f}",
        file=sys.stdout,
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transactions", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=400)
    parser.add_argument("--min-gap-s", type=float, default=None, help="WebhookPorts.min_gap_s")
    parser.add_argument("--receive", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--produce", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.receive:
        body = receive()
    elif args.produce:
        body = produce(args.produce, args.transactions, args.rate)
    else:
        body = measure(args)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:  # as the CLI runs
        runner.run(body)


if __name__ == "__main__":
    main()
