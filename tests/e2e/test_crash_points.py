"""A worker process SIGKILLed at each step of the send pipeline, on PostgreSQL + Redis: another
worker finishes the work, every request is confirmed once, nonces stay contiguous, and what was
signed before the crash is what reaches the chain (the identical bytes, never a re-signing)."""

import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.core.crashpoints import CrashPoint
from chainflow.domain.apikeys.service import create_api_key
from chainflow.domain.master_key import foreign_key_ids
from chainflow.domain.transactions.models import TxAttempt
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.wallets import service as wallets
from chainflow.infra.anvil import run_anvil
from chainflow.infra.db.engine import create_engine, create_sessionmaker
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.rpc.client import RpcClient
from chainflow.infra.signing.keystore import MasterKey
from chainflow.infra.signing.local import generate_private_key
from tests.e2e.test_concurrency import master_env
from tests.support.chains import ANVIL_CHAIN_ID, add_anvil_chain
from tests.support.databases import REDIS_URL
from tests.support.invariants import load_requests, violations
from tests.support.polling import eventually
from tests.support.processes import CHAINFLOW, base_env, listening_port, processes, wait_http

REQUESTS = 12
SINK = "0x000000000000000000000000000000000000dEaD"


@pytest.fixture
async def anvil() -> AsyncIterator[str]:
    async with run_anvil() as url:
        yield url


@contextmanager
def crashing_worker(
    env: dict[str, str], point: str, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [CHAINFLOW, "worker"],
            env=env | {"CHAINFLOW_TEST_CRASH_AT": point},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)


async def prepare(url: str, anvil_url: str, master: MasterKey) -> tuple[str, str]:
    db = create_engine(url)
    sessionmaker = create_sessionmaker(db)
    async with unit_of_work(sessionmaker) as session:
        chain = await add_anvil_chain(session, anvil_url)
        chain.confirmations = 1
        wallet = await wallets.import_wallet(
            session,
            generate_private_key(),
            master=master,
            chain_ids=[ANVIL_CHAIN_ID],
            sealed_rows=foreign_key_ids,
        )
        _, token = await create_api_key(session, ["admin"])
    await db.dispose()
    async with aiohttp.ClientSession() as http:
        await RpcClient(http, anvil_url).call("anvil_setBalance", [wallet.address, hex(10**21)])
    return wallet.address, token


async def submit(api_url: str, token: str, wallet: str) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        for i in range(REQUESTS):
            body = {"chain_id": ANVIL_CHAIN_ID, "wallet": wallet, "to": SINK, "value": str(i + 1)}
            async with http.post(f"{api_url}/v1/transactions", json=body) as response:
                assert response.status == 202, await response.text()


async def died(process: subprocess.Popen[bytes]) -> int:
    async def code() -> int | None:
        return process.poll()

    return await eventually(code, timeout_s=60, interval_s=0.05)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
@pytest.mark.parametrize(
    "point", [CrashPoint.NONCE_TAKEN, CrashPoint.ATTEMPT_STORED, CrashPoint.NODE_ACCEPTED]
)
async def test_sigkill_at_a_pipeline_step_then_another_worker_finishes(
    point: str, database_url: str, anvil: str, tmp_path: Path
) -> None:
    master = MasterKey.generate()
    wallet, token = await prepare(database_url, anvil, master)
    env = base_env(
        database_url=database_url,
        redis_url=REDIS_URL,
        master_key=master_env(master),
        log_format="json",
        log_level="warning",
    )
    db = create_engine(database_url)
    sessionmaker = create_sessionmaker(db)
    try:
        with processes([["api", "--port", "0"]], env, tmp_path) as (api,):
            port = listening_port(api)
            wait_http(f"http://127.0.0.1:{port}/readyz", api)
            with crashing_worker(env, point, tmp_path / "crashed.log") as doomed:
                await submit(f"http://127.0.0.1:{port}", token, wallet)
                assert await died(doomed) == -signal.SIGKILL
            log = (tmp_path / "crashed.log").read_text()
            assert f"crash point {point} reached" in log
            before = await signed_before_restart(sessionmaker)
            async with aiohttp.ClientSession() as http:
                pending = int(
                    await RpcClient(http, anvil).call(
                        "eth_getTransactionCount", [wallet, "pending"]
                    ),
                    16,
                )
            if point == CrashPoint.NONCE_TAKEN:
                assert before == {}  # the signing transaction died uncommitted
                assert pending == 0
            elif point == CrashPoint.ATTEMPT_STORED:
                assert before  # signed and committed, and no node has seen them
                assert pending == 0
            else:
                assert pending == len(before) > 0  # the node took them; nothing recorded that
            (tmp_path / "second").mkdir()
            with processes([["worker"]], env, tmp_path / "second"):
                await all_final(sessionmaker)
            async with aiohttp.ClientSession() as http:
                rpc = RpcClient(http, anvil)
                assert await violations(sessionmaker, rpc) == []
                assert int(await rpc.call("eth_getTransactionCount", [wallet, "latest"]), 16) == (
                    REQUESTS
                )
            rows = await load_requests(sessionmaker)
            assert {tx.status for tx in rows} == {TxStatus.CONFIRMED}
            for tx in rows:
                if tx.id in before:
                    # The bytes signed before the crash are the ones that were mined.
                    assert tx.final_hash == before[tx.id]
                    assert len(tx.attempts) == 1
    finally:
        await db.dispose()


async def signed_before_restart(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> dict[uuid.UUID, str]:
    """Attempt hashes per request as the crash left them."""
    async with unit_of_work(sessionmaker) as session:
        attempts = (await session.scalars(select(TxAttempt))).all()
    return {a.tx_id: a.hash for a in attempts}


async def all_final(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async def done() -> bool:
        rows = await load_requests(sessionmaker)
        return len(rows) == REQUESTS and all(tx.status is TxStatus.CONFIRMED for tx in rows)

    await eventually(done, timeout_s=120, interval_s=0.2)
