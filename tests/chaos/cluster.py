"""A Chainflow cluster for chaos scenarios: real `api` and `worker` processes (or one embedded
`chainflow dev`) on a test database, funded wallets on a real anvil, processes that the
scenario can SIGKILL and restart, and the end-of-run invariant check."""

import asyncio
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.core.types import SecretBytes
from chainflow.domain.apikeys.service import create_api_key
from chainflow.domain.chains.repository import replace_endpoints
from chainflow.domain.master_key import foreign_key_ids
from chainflow.domain.transactions.models import Transaction
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.wallets import service as wallets
from chainflow.infra.db.engine import create_engine, create_sessionmaker
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.rpc.client import RpcClient
from chainflow.infra.signing.keystore import MasterKey
from chainflow.infra.signing.local import generate_private_key
from tests.e2e.test_concurrency import master_env
from tests.support.chains import ANVIL_CHAIN_ID, add_anvil_chain
from tests.support.invariants import violations
from tests.support.polling import eventually
from tests.support.processes import (
    CHAINFLOW,
    base_env,
    listening_port,
    wait_all,
    wait_handling_sigterm,
    wait_http,
)

SINK = "0x000000000000000000000000000000000000dEaD"
# Random scenarios run one seed in .ci/run and more in the full run (scripts/chaos).
SEEDS = pytest.mark.parametrize(
    "seed", [1, *(pytest.param(s, marks=pytest.mark.chaos_full) for s in range(2, 7))]
)
FUNDS_WEI = 10**21


@dataclass
class ChaosWallet:
    address: str
    private_key: bytes


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    killed: bool = False


@dataclass
class Cluster:
    tmp_path: Path
    database_url: str
    anvil_url: str
    env: dict[str, str]
    token: str
    wallets: list[ChaosWallet]
    sessionmaker: async_sessionmaker[AsyncSession]
    rpc: RpcClient  # straight to anvil, never through a proxy
    api_url: str = ""
    procs: list[Proc] = field(default_factory=list)
    submitted: list[str] = field(default_factory=list)

    def start(self, *args: str, **settings: str) -> Proc:
        """Start `chainflow <args>` with the cluster's settings plus `settings`."""
        name = f"{args[0]}-{len(self.procs)}"
        env = self.env | {f"CHAINFLOW_{k.upper()}": v for k, v in settings.items()}
        log = (self.tmp_path / f"{name}.log").open("ab")
        popen = subprocess.Popen([CHAINFLOW, *args], env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        proc = Proc(name, popen)
        self.procs.append(proc)
        return proc

    def start_worker(self, **settings: str) -> Proc:
        # No metrics endpoint: two workers on the default port met "address already in use".
        return self.start("worker", "--metrics-port", "0", **settings)

    def kill(self, proc: Proc) -> None:
        """SIGKILL: no clean-up, no flush, exactly what a crashed host looks like."""
        proc.killed = True
        if proc.popen.poll() is None:
            proc.popen.kill()
        proc.popen.wait(timeout=30)

    def alive(self, kind: str) -> list[Proc]:
        return [p for p in self.procs if p.name.startswith(kind) and p.popen.poll() is None]

    def start_front(self, command: str) -> Proc:
        """`chainflow api` (or `dev`) on a port its own bind picks (`--port 0`): no other process
        can take it before (a port picked free, closed, then bound could be). `serving` tells
        the port once it listens."""
        return self.start(command, "--port", "0")

    async def serving(self, proc: Proc) -> None:
        """Until `proc` (from start_front) answers; the cluster's API URL is then its."""
        port = await asyncio.to_thread(listening_port, proc.popen)
        self.api_url = f"http://127.0.0.1:{port}"
        await self.wait_ready(proc)

    async def wait_ready(self, proc: Proc) -> None:
        await asyncio.to_thread(wait_http, f"{self.api_url}/healthz", proc.popen)

    def log_of(self, proc: Proc) -> str:
        return (self.tmp_path / f"{proc.name}.log").read_text(errors="replace")

    async def submit(
        self, per_wallet: int, *, wallets: Sequence[ChaosWallet] | None = None, **fields: Any
    ) -> list[str]:
        """Submit `per_wallet` transfers for each wallet over the API, 16 at a time."""
        gate = asyncio.Semaphore(16)
        headers = {"Authorization": f"Bearer {self.token}"}
        chosen = list(wallets if wallets is not None else self.wallets)
        async with aiohttp.ClientSession(headers=headers) as http:

            async def one(wallet: ChaosWallet, i: int) -> str:
                body = {
                    "chain_id": ANVIL_CHAIN_ID,
                    "wallet": wallet.address,
                    "to": SINK,
                    "value": str(i + 1),
                    **fields,
                }
                async with gate, http.post(f"{self.api_url}/v1/transactions", json=body) as r:
                    assert r.status == 202, await r.text()
                    return str((await r.json())["id"])

            ids = await asyncio.gather(*(one(w, i) for i in range(per_wallet) for w in chosen))
        self.submitted += ids
        return list(ids)

    async def count(self, *statuses: TxStatus) -> int:
        async with unit_of_work(self.sessionmaker) as session:
            query = select(func.count()).select_from(Transaction)
            if statuses:
                query = query.where(Transaction.status.in_(statuses))
            return int(await session.scalar(query) or 0)

    async def settle(self, *, timeout_s: float = 180) -> float:
        """Wait until every request is terminal; return how long that took."""
        started = time.monotonic()
        terminal = (
            TxStatus.CONFIRMED,
            TxStatus.REVERTED,
            TxStatus.FAILED,
            TxStatus.CANCELLED,
            TxStatus.EXPIRED,
        )

        async def done() -> bool:
            return await self.count(*terminal) == await self.count()

        await eventually(done, timeout_s=timeout_s, interval_s=0.2, what="every request terminal")
        return time.monotonic() - started

    async def assert_settled(self, confirmed: int, *, timeout_s: float = 180) -> None:
        """How a scenario ends: every request terminal within `timeout_s`, `confirmed` of
        them confirmed, and no invariant broken (`violations`)."""
        await self.settle(timeout_s=timeout_s)
        count = await self.count(TxStatus.CONFIRMED)
        assert count == confirmed, f"{count} confirmed, not {confirmed}"
        found = await self.violations()
        assert found == [], found

    async def statuses(self, ids: Collection[str]) -> dict[str, TxStatus]:
        wanted = [uuid.UUID(i) for i in ids]
        async with unit_of_work(self.sessionmaker) as session:
            rows = await session.execute(
                select(Transaction.id, Transaction.status).where(Transaction.id.in_(wanted))
            )
            return {str(tx_id): status for tx_id, status in rows}

    async def violations(
        self, *, foreign_nonces: Mapping[str, Collection[int]] | None = None
    ) -> list[str]:
        return await violations(self.sessionmaker, self.rpc, foreign_nonces=foreign_nonces)

    async def chain_nonce(self, wallet: ChaosWallet, block: str = "latest") -> int:
        return int(await self.rpc.call("eth_getTransactionCount", [wallet.address, block]), 16)

    async def fund(self, wallet: ChaosWallet, wei: int = FUNDS_WEI) -> None:
        await self.rpc.call("anvil_setBalance", [wallet.address, hex(wei)])

    def stop(self) -> None:
        """SIGTERM what still runs, once it handles SIGTERM (a process just started may still
        be starting its interpreter); each process that was not killed must exit 0. Each wait
        is for all processes at once, within one deadline (not one per process)."""
        running = [proc.popen for proc in self.procs if proc.popen.poll() is None]
        wait_handling_sigterm(*running)
        for popen in running:
            if popen.poll() is None:
                popen.send_signal(signal.SIGTERM)
        kept = [p for p in self.procs if not p.killed]
        exits = wait_all([p.popen for p in kept])
        codes = {p.name: code for p, code in zip(kept, exits, strict=True)}
        bad = {name: code for name, code in codes.items() if code != 0}
        assert not bad, (bad, {name: self.log_of_name(name)[-2000:] for name in bad})

    def log_of_name(self, name: str) -> str:
        return (self.tmp_path / f"{name}.log").read_text(errors="replace")


@asynccontextmanager
async def open_cluster(
    tmp_path: Path,
    database_url: str,
    anvil_url: str,
    *,
    wallets: int = 3,
    funded: bool = True,
    rpc_urls: Sequence[str] | None = None,
    redis_url: str | None = None,
    workers: int = 2,
    embedded: bool = False,
    chain: Mapping[str, Any] | None = None,
    **settings: str,
) -> AsyncIterator[Cluster]:
    """A cluster whose chain registry points at `rpc_urls` (default: the anvil itself).

    Distributed: one `api` and `workers` worker processes (the queue is Redis if `redis_url`,
    else the workers find the work by polling). Embedded: one `chainflow dev` process.
    """
    master = MasterKey.generate()
    db = create_engine(database_url)
    sessionmaker = create_sessionmaker(db)
    keys = [generate_private_key() for _ in range(wallets)]
    async with unit_of_work(sessionmaker) as session:
        row = await add_anvil_chain(session, rpc_urls[0] if rpc_urls else anvil_url)
        row.confirmations = 1
        for name, value in (chain or {}).items():
            setattr(row, name, value)
        if rpc_urls:
            replace_endpoints(row, rpc_urls)
        imported = [await wallets_import(session, key, master) for key in keys]
        _, token = await create_api_key(session, ["admin"])
    chosen = {
        "database_url": database_url,
        "master_key": master_env(master),
        "log_format": "json",
        "log_level": "warning",
        "worker_poll_s": "0.05",
    } | settings
    if redis_url:
        chosen["redis_url"] = redis_url
    async with aiohttp.ClientSession() as http:
        cluster = Cluster(
            tmp_path=tmp_path,
            database_url=database_url,
            anvil_url=anvil_url,
            env=base_env(**chosen),
            token=token,
            wallets=[
                ChaosWallet(address, key.reveal())
                for address, key in zip(imported, keys, strict=True)
            ],
            sessionmaker=sessionmaker,
            rpc=RpcClient(http, anvil_url, timeout_s=10),
        )
        if funded:
            for wallet in cluster.wallets:
                await cluster.fund(wallet)
        try:
            front = cluster.start_front("dev" if embedded else "api")
            if not embedded:
                for _ in range(workers):
                    cluster.start_worker()
            await cluster.serving(front)
            yield cluster
            cluster.stop()
        finally:
            for proc in cluster.procs:
                if proc.popen.poll() is None:
                    proc.popen.kill()
                    proc.popen.wait(timeout=30)
            await db.dispose()


async def wallets_import(session: AsyncSession, key: SecretBytes, master: MasterKey) -> str:
    wallet = await wallets.import_wallet(
        session, key, master=master, chain_ids=[ANVIL_CHAIN_ID], sealed_rows=foreign_key_ids
    )
    return wallet.address
