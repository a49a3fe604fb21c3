"""The engine's RPC pools obey the RPC settings: the URL guard and the answer size cap."""

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.core.settings import Settings
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.rpc.client import RpcTransportError
from chainflow.workers.context import open_engine
from tests.support.chains import ANVIL_CHAIN_ID, add_anvil_chain
from tests.support.tcp_servers import endless_body, json_rpc, tcp_server


async def test_a_stored_private_url_is_never_connected_unless_allowed(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # A URL can be in the registry without having passed the guard (a seed file, a database
    # restored from a dev machine, a name that resolved elsewhere when it was checked).
    strict = settings.model_copy(update={"rpc_allow_private_urls": False})
    async with tcp_server(json_rpc({"result": hex(ANVIL_CHAIN_ID)})) as node:
        async with unit_of_work(sessionmaker) as session:
            await add_anvil_chain(session, f"http://localhost:{node.port}")
        async with open_engine(strict) as engine:
            with pytest.raises(RpcTransportError):
                await engine.ports.rpc[ANVIL_CHAIN_ID].call("eth_blockNumber")
        assert node.connections == 0
        async with open_engine(settings) as engine:
            assert await engine.ports.rpc[ANVIL_CHAIN_ID].call("eth_chainId") == hex(ANVIL_CHAIN_ID)
        assert node.connections == 1


async def test_answers_are_capped_at_the_setting(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    capped = settings.model_copy(update={"rpc_max_response_bytes": 1 << 20})
    async with tcp_server(endless_body()) as node:
        async with unit_of_work(sessionmaker) as session:
            await add_anvil_chain(session, node.url)
        async with open_engine(capped) as engine:
            with pytest.raises(RpcTransportError):
                await engine.ports.rpc[ANVIL_CHAIN_ID].call("eth_blockNumber")
        assert 0 < node.bytes_sent < 12 << 20  # 1 MiB read, ~4 MiB in socket buffers; not 16 MiB
