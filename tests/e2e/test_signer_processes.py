"""One wallet per signer backend (local, PKCS#11 on SoftHSM2, AWS KMS on LocalStack), mixed on
one chain, through separate `chainflow api` and `chainflow worker` processes: the wallets are
bound over HTTP by the API process, signed for by the workers, and every request confirms
exactly once with contiguous nonces."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from chainflow.domain.apikeys.service import create_api_key
from chainflow.domain.transactions.models import Transaction
from chainflow.domain.transactions.state import TxStatus
from chainflow.infra.anvil import run_anvil
from chainflow.infra.db.engine import create_engine, create_sessionmaker
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.rpc.client import RpcClient
from chainflow.infra.signing.keystore import MasterKey
from tests.e2e.test_concurrency import SINK, master_env
from tests.support.chains import add_anvil_chain
from tests.support.databases import REDIS_URL
from tests.support.localstack import LocalStack
from tests.support.polling import eventually
from tests.support.processes import base_env, listening_port, processes, wait_http
from tests.support.softhsm import SoftHsm

PER_WALLET = 20
SIGNERS: list[tuple[str, dict[str, Any]]] = [
    ("local", {"generate": True}),
    ("pkcs11", {"signer": {"type": "pkcs11", "generate": True}}),
    ("aws_kms", {"signer": {"type": "aws_kms", "generate": True}}),
]


@pytest.fixture
async def anvil() -> AsyncIterator[str]:
    async with run_anvil() as url:
        yield url


async def prepare(url: str, anvil_url: str) -> str:
    """Register the chain and make an admin key."""
    engine = create_engine(url)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as session:
            chain = await add_anvil_chain(session, anvil_url)
            chain.confirmations = 1  # automine makes no block on top of the last transaction
            _, token = await create_api_key(session, ["admin"])
    finally:
        await engine.dispose()
    return token


async def confirmed_rows(url: str, count: int) -> list[Transaction]:
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)

    async def all_confirmed() -> list[Transaction] | None:
        async with unit_of_work(sessionmaker) as session:
            rows = list((await session.scalars(select(Transaction))).all())
        done = [tx for tx in rows if tx.status is TxStatus.CONFIRMED]
        return rows if len(done) == count else None

    try:
        return await eventually(all_confirmed, timeout_s=240, interval_s=0.5)
    finally:
        await engine.dispose()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
async def test_one_wallet_per_backend_through_api_and_worker_processes(
    database_url: str, anvil: str, softhsm: SoftHsm, localstack: LocalStack, tmp_path: Path
) -> None:
    token = await prepare(database_url, anvil)
    env = base_env(
        database_url=database_url,
        redis_url=REDIS_URL,
        master_key=master_env(MasterKey.generate()),
        log_format="json",
        log_level="warning",
    )
    env |= softhsm.env() | localstack.env()
    commands = [["api", "--port", "0"], ["worker"], ["worker"]]
    headers = {"Authorization": f"Bearer {token}"}
    with processes(commands, env, tmp_path) as started:
        api_url = f"http://127.0.0.1:{listening_port(started[0])}"
        wait_http(f"{api_url}/readyz", started[0])
        async with aiohttp.ClientSession(headers=headers) as http:
            addresses = []
            for kind, spec in SIGNERS:
                body = {**spec, "chain_ids": [31337]}
                async with http.post(f"{api_url}/v1/wallets", json=body) as response:
                    assert response.status == 201, await response.text()
                    created = await response.json()
                assert created["signer"]["type"] == kind
                addresses.append(created["address"])
            rpc = RpcClient(http, anvil)
            for address in addresses:
                await rpc.call("anvil_setBalance", [address, hex(10**21)])
            for i in range(PER_WALLET):  # interleaved: the backends share every round
                for address in addresses:
                    tx = {"chain_id": 31337, "wallet": address, "to": SINK, "value": str(i + 1)}
                    async with http.post(f"{api_url}/v1/transactions", json=tx) as response:
                        assert response.status == 202, await response.text()
            rows = await confirmed_rows(database_url, PER_WALLET * len(addresses))
            for address in addresses:
                mine = [tx.nonce for tx in rows if tx.from_address == address]
                nonces = sorted(-1 if nonce is None else int(nonce) for nonce in mine)
                assert nonces == list(range(PER_WALLET)), address
                mined = await rpc.call("eth_getTransactionCount", [address, "latest"])
                assert int(mined, 16) == PER_WALLET  # each executed once, none twice, no gap
