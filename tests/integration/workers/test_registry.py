"""Workers follow the chain registry: a chain enabled after start gets a loop, no restart."""

import asyncio

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.core.settings import Settings
from chainflow.domain.chains.models import RpcEndpoint
from chainflow.domain.transactions.state import TxStatus
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.rpc.client import RpcClient, RpcTransportError
from chainflow.infra.rpc.endpoints import EndpointPool, EndpointState
from chainflow.workers.context import open_engine
from chainflow.workers.main import run_engine
from tests.support.chains import ANVIL_CHAIN_ID, add_anvil_chain
from tests.support.engine import EngineHarness, has_status
from tests.support.polling import eventually
from tests.support.processes import refusing_port


async def test_sync_adds_new_chains_and_follows_url_changes(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], anvil_url: str
) -> None:
    async with open_engine(settings) as engine:
        assert engine.ports.refresh_chains is not None
        assert dict(engine.ports.rpc) == {}
        async with unit_of_work(sessionmaker) as session:
            await add_anvil_chain(session, anvil_url)
        assert await engine.ports.refresh_chains() == [ANVIL_CHAIN_ID]
        first = engine.ports.rpc[ANVIL_CHAIN_ID]
        assert await engine.ports.refresh_chains() == []
        assert engine.ports.rpc[ANVIL_CHAIN_ID] is first  # unchanged URLs keep the pool
        async with unit_of_work(sessionmaker) as session:
            session.add(RpcEndpoint(chain_id=ANVIL_CHAIN_ID, url=anvil_url + "/", position=1))
        assert await engine.ports.refresh_chains() == []
        assert engine.ports.rpc[ANVIL_CHAIN_ID] is not first
        assert int(await engine.ports.rpc[ANVIL_CHAIN_ID].call("eth_chainId"), 16) == ANVIL_CHAIN_ID


async def test_a_chain_added_after_start_gets_its_requests_confirmed(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], anvil_url: str
) -> None:
    async with open_engine(settings) as engine, aiohttp.ClientSession() as http:
        harness = EngineHarness(engine, RpcClient(http, anvil_url, timeout_s=5), sessionmaker)
        stop = asyncio.Event()
        loops = asyncio.create_task(run_engine(engine, stop, poll_s=0.05, refresh_s=0.1))
        try:
            async with unit_of_work(sessionmaker) as session:
                chain = await add_anvil_chain(session, anvil_url)
                chain.confirmations = 1
            wallet = await harness.wallet()
            tx_id = await harness.submit(wallet, value="7")

            async def confirmed() -> bool:
                return has_status(TxStatus.CONFIRMED)(await harness.get(tx_id))

            await eventually(confirmed, timeout_s=30)
        finally:
            stop.set()
            await loops


async def test_an_endpoint_s_breaker_stays_open_for_the_configured_time(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """CHAINFLOW_RPC_BREAKER_OPEN_S reaches the workers' pools (the chaos scenarios shorten it)."""
    dead = f"http://127.0.0.1:{refusing_port()}/nothing-listens-here"
    async with unit_of_work(sessionmaker) as session:
        await add_anvil_chain(session, dead)
    quick = settings.model_copy(update={"rpc_breaker_open_s": 0.5})
    async with open_engine(quick) as engine:
        assert engine.ports.refresh_chains is not None
        await engine.ports.refresh_chains()
        pool = engine.ports.rpc[ANVIL_CHAIN_ID]
        assert isinstance(pool, EndpointPool)
        for _ in range(3):  # BreakerSettings.failures_to_open
            with pytest.raises(RpcTransportError):
                await pool.call("eth_blockNumber")
        assert pool.health()[0].state is EndpointState.OPEN

        async def half_open() -> bool:
            return pool.health()[0].state is EndpointState.HALF_OPEN

        await eventually(half_open, timeout_s=10)  # the default would keep it open 30 s
