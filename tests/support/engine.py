"""Engine test harness: a real anvil, a funded wallet, the real engine, and polling helpers."""

import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.core.types import TxId
from chainflow.domain.master_key import foreign_key_ids
from chainflow.domain.transactions import service as txs
from chainflow.domain.transactions.config import EngineConfig
from chainflow.domain.transactions.models import Transaction
from chainflow.domain.transactions.schemas import TxCreate
from chainflow.domain.transactions.state import TxStatus, is_terminal
from chainflow.domain.wallets import service as wallets
from chainflow.domain.wallets.models import Wallet
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.rpc.client import RpcClient
from chainflow.infra.signing.keystore import MasterKey
from chainflow.infra.signing.local import generate_private_key
from chainflow.workers.engine import Engine, Ports
from chainflow.workers.main import run_round
from tests.support.chains import ANVIL_CHAIN_ID, add_anvil_chain
from tests.support.polling import eventually

# The time rule out of reach within a test (30 s): on a loaded machine a send not mined within
# 1 s was bumped, and a test that counts one event per status change saw a replacement it did
# not ask for. A test of the time rule sets it itself (FAST_STUCK).
TEST_CONFIG = EngineConfig(
    stuck_after_s=30.0, resend_after_s=0.3, stuck_after_blocks=3, foreign_nonce_grace_s=2.0
)
# A send not mined within 1 s is stuck: for the tests that wait for a bump by time.
FAST_STUCK = dataclasses.replace(TEST_CONFIG, stuck_after_s=1.0)
SINK = "0x000000000000000000000000000000000000dEaD"


@dataclass
class EngineHarness:
    engine: Engine
    rpc: RpcClient
    sessionmaker: async_sessionmaker[AsyncSession]

    async def wallet(self, *, balance_wei: int = 10**21) -> Wallet:
        """A new wallet enabled on anvil, funded with anvil_setBalance."""
        async with unit_of_work(self.sessionmaker) as session:
            wallet = await wallets.import_wallet(
                session,
                generate_private_key(),
                master=self.engine.ports.master_key,
                chain_ids=[ANVIL_CHAIN_ID],
                sealed_rows=foreign_key_ids,
            )
        await self.rpc.call("anvil_setBalance", [wallet.address, hex(balance_wei)])
        return wallet

    async def submit(self, wallet: Wallet, **fields: Any) -> TxId:
        body = TxCreate.model_validate(
            {"chain_id": ANVIL_CHAIN_ID, "wallet": str(wallet.id), "to": SINK, **fields}
        )
        async with unit_of_work(self.sessionmaker) as session:
            result = await txs.submit(session, body, api_key_id=None, idempotency_key=None)
            return result.tx_id

    async def get(self, tx_id: uuid.UUID) -> Transaction:
        async with unit_of_work(self.sessionmaker) as session:
            return await txs.get_transaction(session, tx_id)

    async def run_until(
        self,
        tx_ids: Sequence[uuid.UUID],
        done: Callable[[Transaction], bool],
        *,
        timeout_s: float = 30,
    ) -> list[Transaction]:
        """Run engine rounds until `done` holds for every request."""

        async def check() -> list[Transaction] | None:
            await run_round(self.engine, ANVIL_CHAIN_ID)
            rows = [await self.get(tx_id) for tx_id in tx_ids]
            return rows if all(done(tx) for tx in rows) else None

        return await eventually(check, timeout_s=timeout_s, interval_s=0.05)

    async def run_until_final(self, tx_ids: Sequence[uuid.UUID], **kw: Any) -> list[Transaction]:
        return await self.run_until(tx_ids, lambda tx: is_terminal(tx.status), **kw)

    async def chain_nonce(self, wallet: Wallet, block: str = "latest") -> int:
        return int(await self.rpc.call("eth_getTransactionCount", [wallet.address, block]), 16)


def has_status(status: TxStatus) -> Callable[[Transaction], bool]:
    return lambda tx: tx.status is status


@asynccontextmanager
async def open_engine_harness(
    sessionmaker: async_sessionmaker[AsyncSession],
    anvil_url: str,
    master_key: MasterKey,
    *,
    confirmations: int = 1,
    config: EngineConfig = TEST_CONFIG,
) -> AsyncIterator[EngineHarness]:
    async with aiohttp.ClientSession() as http:
        rpc = RpcClient(http, anvil_url, timeout_s=5)
        async with unit_of_work(sessionmaker) as session:
            chain = await add_anvil_chain(session, anvil_url)
            chain.confirmations = confirmations
        ports = Ports(
            sessionmaker=sessionmaker,
            rpc={ANVIL_CHAIN_ID: rpc},
            master_key=master_key,
            config=config,
        )
        engine = Engine.start(ports)
        yield EngineHarness(engine=engine, rpc=rpc, sessionmaker=sessionmaker)
        await engine.stop()


# Runtime: if slot 0 is set, revert; else set it to 1. Two calls estimated in one round both
# pass (slot 0 is still 0), and on chain the second reverts: a receipt with status 0.
ONCE_ONLY_INIT_CODE = "0x6011600c60003960116000f3" + "600054600c57600160005500" + "5b600080fd"
_DEPLOYER = "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720"  # anvil's unlocked account 9


def harness_fixture(
    *, own_anvil: bool = False, confirmations: int = 1, config: EngineConfig = TEST_CONFIG
) -> Any:
    """A pytest fixture, `deep_harness = harness_fixture(confirmations=3)`: an engine harness
    on the session's anvil, or with `own_anvil` on the test's own (fixture `own_anvil_url`:
    base-fee spikes and reorgs must not reach the shared one)."""

    async def opened(
        sessionmaker: async_sessionmaker[AsyncSession], url: str, master_key: MasterKey
    ) -> AsyncIterator[EngineHarness]:
        async with open_engine_harness(
            sessionmaker, url, master_key, confirmations=confirmations, config=config
        ) as value:
            yield value

    async def on_shared_anvil(
        sessionmaker: async_sessionmaker[AsyncSession], anvil_url: str, master_key: MasterKey
    ) -> AsyncIterator[EngineHarness]:
        async for value in opened(sessionmaker, anvil_url, master_key):
            yield value

    async def on_own_anvil(
        sessionmaker: async_sessionmaker[AsyncSession], own_anvil_url: str, master_key: MasterKey
    ) -> AsyncIterator[EngineHarness]:
        async for value in opened(sessionmaker, own_anvil_url, master_key):
            yield value

    return pytest.fixture(on_own_anvil if own_anvil else on_shared_anvil)


async def deploy(rpc: RpcClient, init_code: str) -> str:
    """Deploy raw init code from an unlocked anvil account; return the contract address."""
    tx_hash = await rpc.call("eth_sendTransaction", [{"from": _DEPLOYER, "data": init_code}])

    async def address() -> str | None:
        receipt = await rpc.call("eth_getTransactionReceipt", [tx_hash])
        return str(receipt["contractAddress"]) if receipt else None

    return await eventually(address, timeout_s=10)
