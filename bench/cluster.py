"""Chainflow as users run it, for benchmarks: a database with the chain and funded wallets,
then `chainflow api` + `chainflow worker` processes (or one `chainflow dev`), with their RSS
sampled while they run."""

import asyncio
import base64
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import psutil
import redis.asyncio as redis

from bench.ports import listening_port
from chainflow.domain.apikeys.service import KeyLimits, create_api_key
from chainflow.domain.chains.models import Chain, RpcEndpoint
from chainflow.domain.master_key import foreign_key_ids
from chainflow.domain.wallets import service as wallets
from chainflow.infra.db.engine import create_engine, create_sessionmaker
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.rpc.client import RpcClient
from chainflow.infra.signing.keystore import MasterKey
from chainflow.infra.signing.local import generate_private_key
from chainflow.migrations.runner import upgrade

CHAIN_ID = 31337
BENCH_KEY_RATE_PER_S = 1_000_000.0  # the most a key may be given (`--rate`)
CHAINFLOW = str(Path(sys.executable).parent / "chainflow")
POSTGRES = os.environ.get("CHAINFLOW_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")
REDIS = os.environ.get("CHAINFLOW_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


@dataclass
class Running:
    """The processes of one shape, and the peak RSS of each, sampled every 0.2 s."""

    token: str
    addresses: list[str]
    database_url: str
    api_urls: list[str] = field(default_factory=list)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # The main process of PostgreSQL and of Redis (server_pids), found once per run.
    servers: dict[str, int] = field(default_factory=dict)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    rss_mb: dict[str, list[float]] = field(default_factory=dict)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) so far of our processes, anvil, PostgreSQL, Redis and
        this benchmark process (the client), by name."""
        found: dict[str, float] = {}

        def add(name: str, proc: psutil.Process, *, reaped: bool = False) -> None:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                times = proc.cpu_times()
                spent = times.user + times.system
                if reaped:  # children that exited (PostgreSQL backends of closed connections)
                    spent += times.children_user + times.children_system
                found[name] = found.get(name, 0.0) + spent

        for name, popen in self.procs.items():
            add(name, psutil.Process(popen.pid))
        me = psutil.Process()
        add("client", me)
        for child in me.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                if "anvil" in child.name():
                    add("anvil", child)
        for name, pid in self.servers.items():
            for i, proc in enumerate(_server_processes(pid)):
                add(name, proc, reaped=i == 0)
        return found

    @property
    def api_url(self) -> str:
        return self.api_urls[0]

    async def sample_rss(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for name, proc in self.procs.items():
                try:
                    rss = psutil.Process(proc.pid).memory_info().rss / 2**20
                except psutil.NoSuchProcess:
                    continue
                self.rss_mb.setdefault(name, []).append(rss)
                self.peak_rss_mb[name] = max(self.peak_rss_mb.get(name, 0.0), rss)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)


def _server_processes(pid: int) -> list[psutil.Process]:
    """A server's main process and its children (PostgreSQL's backends and helpers)."""
    with contextlib.suppress(psutil.NoSuchProcess):
        main = psutil.Process(pid)
        return [main, *main.children(recursive=True)]
    return []


async def server_pids() -> dict[str, int]:
    """The pids of PostgreSQL's postmaster (the parent of a backend of ours) and of Redis
    (INFO's process_id), when they run on this host.

    Looked up by asking the servers, not by listening port or process name: when the port's
    listener could not be seen (a race of the socket scan with exiting processes) every
    process named postgres was counted, a private server's too, and the first one's reaped
    children (all since it started): one run read PostgreSQL at 43 s of CPU in a 5 s window.
    """
    found: dict[str, int] = {}
    connection = await asyncpg.connect(f"{POSTGRES}/postgres")
    try:
        backend = int(await connection.fetchval("SELECT pg_backend_pid()"))
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):  # another host
            found["postgres"] = psutil.Process(backend).ppid()  # while the backend lives
    finally:
        await connection.close()
    client = redis.Redis.from_url(REDIS)
    try:
        info = await client.info("server")
    finally:
        await client.aclose()
    if psutil.pid_exists(int(info["process_id"])):
        found["redis"] = int(info["process_id"])
    return found


async def _prepare(
    database_url: str, anvil_url: str, wallet_count: int, *, fund: bool
) -> tuple[str, list[str], str]:
    """Register anvil, import (and fund) wallets, make an admin key.

    Returns: (master key for CHAINFLOW_MASTER_KEY, wallet addresses, API token)."""
    master = MasterKey.generate()
    engine = create_engine(database_url)
    sessionmaker = create_sessionmaker(engine)
    async with unit_of_work(sessionmaker) as session:
        session.add(
            Chain(
                chain_id=CHAIN_ID,
                name="Anvil (bench)",
                native_symbol="ETH",
                eip1559=True,
                confirmations=1,
                block_time_s=1,
                enabled=True,
                rpc_endpoints=[RpcEndpoint(url=anvil_url, position=0, weight=1)],
            )
        )
        await session.flush()
        rows = [
            await wallets.import_wallet(
                session,
                generate_private_key(),
                master=master,
                chain_ids=[CHAIN_ID],
                sealed_rows=foreign_key_ids,
            )
            for _ in range(wallet_count)
        ]
        # The load generator outruns the default 1,000 writes/s per key on a fast machine; the
        # limiter still runs (one Redis call per event-loop turn), it just never refuses.
        _, token = await create_api_key(
            session, ["admin"], limits=KeyLimits(rate_per_s=BENCH_KEY_RATE_PER_S)
        )
    await engine.dispose()
    async with aiohttp.ClientSession() as http:
        rpc = RpcClient(http, anvil_url)
        if fund:
            await rpc.batch([("anvil_setBalance", [w.address, hex(10**24)]) for w in rows])
    secret = base64.b64encode(master.secret.reveal()).decode()
    return secret, [w.address for w in rows], token


async def _serving(proc: subprocess.Popen[bytes]) -> int:
    """The port the API process (started with `--port 0`: its own bind picks the port, which
    no other process can take first) listens on, once it answers GET /healthz there."""
    port = await asyncio.to_thread(listening_port, proc)
    await asyncio.to_thread(_wait_http, port, proc)
    return port


def _wait_http(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    """Until `proc`, listening on `port`, answers GET /healthz there."""
    url = f"http://127.0.0.1:{port}/healthz"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:  # URLError, refused, reset, or a timeout (a server still starting)
            pass
        time.sleep(0.1)  # polling a process that is still starting
    raise RuntimeError(f"{url} did not answer")


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(f"{POSTGRES}/postgres")
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@asynccontextmanager
async def database(shape: str, folder: Path) -> AsyncIterator[str]:
    """A new, migrated database: PostgreSQL for the distributed shape, SQLite for embedded."""
    if shape == "embedded":
        url = f"sqlite:///{folder / f'bench-{uuid.uuid4().hex[:8]}.db'}"
        await asyncio.to_thread(upgrade, url)
        yield url
        return
    name = f"cf_bench_{uuid.uuid4().hex[:8]}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        url = f"{POSTGRES}/{name}"
        await asyncio.to_thread(upgrade, url)
        yield url
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def stop_all(procs: Sequence[subprocess.Popen[bytes]], *, timeout_s: float = 30) -> None:
    """SIGTERM each process, wait up to `timeout_s` for each, then SIGKILL it. The waits run
    off the event loop: what the benchmark serves on it (bench.webhooks' receiver) goes on
    answering the processes while they stop; a blocking wait left the workers' last webhook
    sends unanswered until their 10 s timeout."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            await asyncio.to_thread(proc.wait, timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()


@asynccontextmanager
async def run_shape(
    shape: str,
    anvil_url: str,
    wallet_count: int,
    folder: Path,
    *,
    workers: int = 2,
    apis: int = 1,
    fund: bool = True,
    settings: Mapping[str, str] | None = None,
) -> AsyncIterator[Running]:
    """Start one shape on a fresh database (`settings`: more CHAINFLOW_* variables); stop its
    processes with SIGTERM on exit."""
    async with database(shape, folder) as url:
        master, addresses, token = await _prepare(url, anvil_url, wallet_count, fund=fund)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINFLOW_")} | {
            "CHAINFLOW_DATABASE_URL": url,
            "CHAINFLOW_MASTER_KEY": master,
            "CHAINFLOW_LOG_LEVEL": "warning",
            "CHAINFLOW_LOG_FORMAT": "json",
            "CHAINFLOW_RPC_ALLOW_PRIVATE_URLS": "true",  # the bench chain is anvil on loopback
        }
        env |= dict(settings or {})
        running = Running(token, addresses, url, servers=await server_pids())
        if shape == "embedded":
            servers = {"dev": ["dev", "--port"]}
        else:
            env["CHAINFLOW_REDIS_URL"] = REDIS
            servers = {f"api{i + 1}" if apis > 1 else "api": ["api", "--port"] for i in range(apis)}
        commands = {name: [*args, "0"] for name, args in servers.items()}
        if shape != "embedded":
            # No worker serves metrics over HTTP: no benchmark reads them, two workers on one
            # host cannot share the default port, and a port picked free (bind to 0, then
            # close) could be taken before the worker's bind, which turned its metrics off in
            # a log line. Its metrics are still kept (CHAINFLOW_METRICS_ENABLED), at their cost.
            commands |= {
                f"worker{i + 1}": ["worker", "--metrics-port", "0"] for i in range(workers)
            }
        logs = (folder / f"{shape}-{wallet_count}.log").open("ab")

        def start(args: Sequence[str]) -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [CHAINFLOW, *args], env=env, stdout=logs, stderr=subprocess.STDOUT
            )

        try:
            for name, args in commands.items():
                running.procs[name] = start(args)
            for name in servers:
                port = await _serving(running.procs[name])
                running.api_urls.append(f"http://127.0.0.1:{port}")
            yield running
        finally:
            await stop_all(list(running.procs.values()))
            logs.close()
