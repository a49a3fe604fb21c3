"""Many wallets, many requests, several processes: each request confirmed exactly once, nonces
contiguous per wallet on chain. Distributed (PostgreSQL + Redis, 1 api + 4 workers) and
embedded (chainflow dev on SQLite). CI sends 20 wallets x 10 requests; the 2,000-request
runs (20 x 100) are `chaos_full` (scripts/chaos)."""

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import TypeVar

import aiohttp
import pytest
from sqlalchemy import func, select

from chainflow.domain.apikeys.service import create_api_key
from chainflow.domain.chains import service as chains
from chainflow.domain.master_key import foreign_key_ids
from chainflow.domain.transactions.models import AttemptStatus, Transaction, TxAttempt
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.wallets import service as wallets
from chainflow.infra.anvil import run_anvil
from chainflow.infra.db.engine import create_engine, create_sessionmaker
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.rpc.client import RpcClient
from chainflow.infra.signing.keystore import MasterKey
from chainflow.infra.signing.local import generate_private_key
from chainflow.migrations.runner import upgrade
from tests.support.chains import add_anvil_chain
from tests.support.databases import REDIS_URL
from tests.support.polling import eventually
from tests.support.processes import base_env, listening_port, processes, wait_http

WALLETS = 20
# Requests per wallet: 200 in all in CI, 2,000 in the full run.
PER_WALLET = pytest.mark.parametrize(
    "per_wallet", [10, pytest.param(100, marks=pytest.mark.chaos_full)]
)
SINK = "0x000000000000000000000000000000000000dEaD"
T = TypeVar("T")


@pytest.fixture
async def anvil() -> AsyncIterator[str]:
    async with run_anvil() as url:
        yield url


async def prepare(
    url: str, anvil_url: str, master: MasterKey, *, register_chain: bool = True
) -> tuple[list[str], str]:
    """Register the chain (unless chainflow dev does), import and fund the wallets, make a key."""
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)
    async with unit_of_work(sessionmaker) as session:
        if register_chain:
            chain = await add_anvil_chain(session, anvil_url)
            chain.confirmations = 1  # automine makes no block on top of the last transaction
        rows = [
            await wallets.import_wallet(
                session,
                generate_private_key(),
                master=master,
                chain_ids=[31337],
                sealed_rows=foreign_key_ids,
            )
            for _ in range(WALLETS)
        ]
        _, token = await create_api_key(session, ["admin"])
    await engine.dispose()
    async with aiohttp.ClientSession() as http:
        rpc = RpcClient(http, anvil_url)
        for wallet in rows:
            await rpc.call("anvil_setBalance", [wallet.address, hex(10**21)])
    return [w.address for w in rows], token


async def dev_anvil_url(url: str) -> str:
    """The anvil `chainflow dev --anvil --anvil-port 0` started (on the port its own bind
    picked): chain 31337's one RPC URL, set in the database `url` before dev serves."""
    engine = create_engine(url)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as session:
            [anvil_url] = (await chains.get_chain(session, 31337)).rpc_urls
            return anvil_url
    finally:
        await engine.dispose()


async def submit_all(api_url: str, token: str, addresses: list[str], per_wallet: int) -> list[str]:
    gate = asyncio.Semaphore(16)
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as http:

        async def one(address: str, i: int) -> str:
            body = {"chain_id": 31337, "wallet": address, "to": SINK, "value": str(i + 1)}
            async with gate, http.post(f"{api_url}/v1/transactions", json=body) as response:
                assert response.status == 202, await response.text()
                return str((await response.json())["id"])

        jobs = [one(a, i) for i in range(per_wallet) for a in addresses]
        return await asyncio.gather(*jobs)


async def assert_exactly_once(
    url: str, anvil_url: str, addresses: list[str], per_wallet: int
) -> None:
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)

    async def confirmed() -> int | None:
        async with unit_of_work(sessionmaker) as session:
            query = select(func.count()).where(Transaction.status == TxStatus.CONFIRMED)
            count = int(await session.scalar(query) or 0)
        return count if count == WALLETS * per_wallet else None

    try:
        await eventually(confirmed, timeout_s=420, interval_s=0.25)
        async with unit_of_work(sessionmaker) as session:
            rows = (await session.scalars(select(Transaction))).all()
            mined = await session.scalar(
                select(func.count()).where(TxAttempt.status == AttemptStatus.MINED)
            )
    finally:
        await engine.dispose()
    assert len(rows) == WALLETS * per_wallet == mined
    nonces: dict[str, list[int]] = {}
    for tx in rows:
        nonces.setdefault(tx.from_address, []).append(tx.nonce if tx.nonce is not None else -1)
    async with aiohttp.ClientSession() as http:
        rpc = RpcClient(http, anvil_url)
        for address in addresses:
            assert sorted(nonces[address]) == list(range(per_wallet))
            on_chain = await rpc.call("eth_getTransactionCount", [address, "latest"])
            assert int(on_chain, 16) == per_wallet  # executed once each, none twice, no gap


async def timed(work: Awaitable[T], what: str, count: int) -> T:
    started = time.monotonic()
    result = await work
    print(f"{what}: {count} requests in {time.monotonic() - started:.1f} s")  # noqa: T201
    return result


async def submit_and_check(
    api_port: int, token: str, url: str, anvil_url: str, addresses: list[str], per_wallet: int
) -> None:
    """Send `per_wallet` requests per wallet over the API, then check each executed once."""
    count = WALLETS * per_wallet
    api_url = f"http://127.0.0.1:{api_port}"
    await timed(submit_all(api_url, token, addresses, per_wallet), "submitted", count)
    await timed(assert_exactly_once(url, anvil_url, addresses, per_wallet), "all confirmed", count)


def master_env(master: MasterKey) -> str:
    return base64.b64encode(master.secret.reveal()).decode()


class TestDistributed:
    @pytest.mark.timeout(900)
    @pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
    @PER_WALLET
    async def test_four_workers_twenty_wallets_many_requests(
        self, per_wallet: int, database_url: str, anvil: str, tmp_path: Path
    ) -> None:
        master = MasterKey.generate()
        addresses, token = await prepare(database_url, anvil, master)
        env = base_env(
            database_url=database_url,
            redis_url=REDIS_URL,
            master_key=master_env(master),
            log_format="json",
            log_level="warning",
        )
        commands = [["api", "--port", "0"]] + [["worker"]] * 4
        with processes(commands, env, tmp_path) as started:
            port = listening_port(started[0])
            wait_http(f"http://127.0.0.1:{port}/readyz", started[0])
            await submit_and_check(port, token, database_url, anvil, addresses, per_wallet)


class TestEmbedded:
    @pytest.mark.timeout(900)
    @PER_WALLET
    async def test_chainflow_dev_on_sqlite(self, per_wallet: int, tmp_path: Path) -> None:
        master = MasterKey.generate()
        data_dir = tmp_path / "data"
        url = f"sqlite:///{data_dir / 'chainflow.db'}"
        await asyncio.to_thread(upgrade, url)
        env = base_env(
            data_dir=str(data_dir),
            master_key=master_env(master),
            log_format="json",
            log_level="warning",
        )
        command = ["dev", "--anvil", "--anvil-port", "0", "--port", "0"]
        with processes([command], env, tmp_path) as started:
            port = listening_port(started[0])
            wait_http(f"http://127.0.0.1:{port}/healthz", started[0])
            anvil_url = await dev_anvil_url(url)
            addresses, token = await prepare(url, anvil_url, master, register_chain=False)
            await submit_and_check(port, token, url, anvil_url, addresses, per_wallet)
