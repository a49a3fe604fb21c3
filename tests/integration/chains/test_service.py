"""Chain registry use cases on PostgreSQL and SQLite, verified against a real anvil."""

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.domain.chains import service
from chainflow.domain.chains.errors import (
    ChainExists,
    ChainHasNoRpc,
    RpcChainMismatch,
    RpcUnreachable,
)
from chainflow.domain.chains.models import Chain
from chainflow.domain.chains.probe import ChainIdProbe
from chainflow.domain.chains.schemas import ChainCreate, ChainUpdate
from chainflow.domain.chains.seed import load_seed
from chainflow.infra.db.uow import unit_of_work
from tests.support.processes import refusing_port

Sessionmaker = async_sessionmaker[AsyncSession]


def new_chain(chain_id: int, url: str) -> ChainCreate:
    return ChainCreate(
        chain_id=chain_id,
        name=f"chain {chain_id}",
        native_symbol="ETH",
        rpc_urls=[url],
        eip1559=True,
        confirmations=2,
    )


async def count_chains(sessionmaker: Sessionmaker) -> int:
    async with unit_of_work(sessionmaker) as session:
        return int(await session.scalar(select(func.count()).select_from(Chain)) or 0)


class TestSeed:
    async def test_seeds_every_packaged_chain_once(self, sessionmaker: Sessionmaker) -> None:
        seeds = load_seed()
        async with unit_of_work(sessionmaker) as session:
            first = await service.seed_chains(session, seeds)
        async with unit_of_work(sessionmaker) as session:
            second = await service.seed_chains(session, seeds)
        ids = {seed.chain_id for seed in seeds}
        assert ids == {1, 11155111, 137, 42161, 8453, 10, 56, 43114, 31337}
        assert (first, second) == (9, 0)

    async def test_never_overwrites_an_edited_chain(
        self, sessionmaker: Sessionmaker, probe: ChainIdProbe
    ) -> None:
        seeds = load_seed()
        async with unit_of_work(sessionmaker) as session:
            await service.seed_chains(session, seeds)
            update = ChainUpdate(confirmations=99)
            await service.update_chain(session, 1, update, probe=probe)
        async with unit_of_work(sessionmaker) as session:
            await service.seed_chains(session, seeds)
            assert (await service.get_chain(session, 1)).confirmations == 99


class TestCreate:
    async def test_stores_chain_whose_rpc_serves_it(
        self, sessionmaker: Sessionmaker, probe: ChainIdProbe, anvil_url: str
    ) -> None:
        async with unit_of_work(sessionmaker) as session:
            await service.create_chain(session, new_chain(31337, anvil_url), probe=probe)
        async with unit_of_work(sessionmaker) as session:
            chain = await service.get_chain(session, 31337)
            assert chain.rpc_urls == [anvil_url]
            assert chain.enabled

    async def test_refuses_rpc_of_another_chain_and_stores_nothing(
        self, sessionmaker: Sessionmaker, probe: ChainIdProbe, anvil_url: str
    ) -> None:
        with pytest.raises(RpcChainMismatch, match=r"rpc_urls\[0\] .* does not serve chain 5$"):
            async with unit_of_work(sessionmaker) as session:
                await service.create_chain(session, new_chain(5, anvil_url), probe=probe)
        assert await count_chains(sessionmaker) == 0

    async def test_refuses_unreachable_rpc_and_stores_nothing(
        self, sessionmaker: Sessionmaker, probe: ChainIdProbe
    ) -> None:
        dead = f"http://127.0.0.1:{refusing_port()}"
        with pytest.raises(RpcUnreachable, match=r"rpc_urls\[0\].*unreachable"):
            async with unit_of_work(sessionmaker) as session:
                await service.create_chain(session, new_chain(31337, dead), probe=probe)
        assert await count_chains(sessionmaker) == 0

    async def test_refuses_a_duplicate(
        self, sessionmaker: Sessionmaker, probe: ChainIdProbe, anvil_url: str
    ) -> None:
        async with unit_of_work(sessionmaker) as session:
            await service.create_chain(session, new_chain(31337, anvil_url), probe=probe)
        with pytest.raises(ChainExists):
            async with unit_of_work(sessionmaker) as session:
                await service.create_chain(session, new_chain(31337, anvil_url), probe=probe)


class TestUpdate:
    async def test_enabling_verifies_stored_urls(
        self, sessionmaker: Sessionmaker, probe: ChainIdProbe
    ) -> None:
        async with unit_of_work(sessionmaker) as session:
            await service.seed_chains(session, load_seed())
        # The seeded public URL is not reachable from this machine: enabling must refuse.
        with pytest.raises(RpcUnreachable):
            async with unit_of_work(sessionmaker) as session:
                await service.update_chain(session, 137, ChainUpdate(enabled=True), probe=probe)
        async with unit_of_work(sessionmaker) as session:
            assert not (await service.get_chain(session, 137)).enabled

    async def test_new_urls_of_the_wrong_chain_change_nothing(
        self, sessionmaker: Sessionmaker, probe: ChainIdProbe, anvil_url: str
    ) -> None:
        async with unit_of_work(sessionmaker) as session:
            await service.seed_chains(session, load_seed())
        update = ChainUpdate(rpc_urls=[anvil_url], enabled=True)
        with pytest.raises(RpcChainMismatch):
            async with unit_of_work(sessionmaker) as session:
                await service.update_chain(session, 137, update, probe=probe)
        async with unit_of_work(sessionmaker) as session:
            chain = await service.get_chain(session, 137)
            assert (chain.enabled, chain.rpc_urls) == (False, ["https://polygon-rpc.com"])

    async def test_repoints_a_chain_at_a_verified_url(
        self, sessionmaker: Sessionmaker, probe: ChainIdProbe, anvil_url: str
    ) -> None:
        async with unit_of_work(sessionmaker) as session:
            await service.seed_chains(session, load_seed())
        update = ChainUpdate(rpc_urls=[anvil_url], confirmations=5, max_fee_per_gas_cap=None)
        async with unit_of_work(sessionmaker) as session:
            await service.update_chain(session, 31337, update, probe=probe)
        async with unit_of_work(sessionmaker) as session:
            chain = await service.get_chain(session, 31337)
            assert (chain.rpc_urls, chain.confirmations) == ([anvil_url], 5)
            assert chain.max_fee_per_gas_cap is None

    async def test_setting_the_same_urls_again_is_accepted(
        self, sessionmaker: Sessionmaker, probe: ChainIdProbe, anvil_url: str
    ) -> None:
        async with unit_of_work(sessionmaker) as session:
            await service.create_chain(session, new_chain(31337, anvil_url), probe=probe)
        update = ChainUpdate(rpc_urls=[anvil_url], enabled=True)
        async with unit_of_work(sessionmaker) as session:
            await service.update_chain(session, 31337, update, probe=probe)
        async with unit_of_work(sessionmaker) as session:
            assert (await service.get_chain(session, 31337)).rpc_urls == [anvil_url]

    async def test_enabling_without_urls_is_refused(
        self, sessionmaker: Sessionmaker, probe: ChainIdProbe, anvil_url: str
    ) -> None:
        async with unit_of_work(sessionmaker) as session:
            chain = await service.create_chain(session, new_chain(31337, anvil_url), probe=probe)
            chain.enabled = False
            chain.rpc_endpoints = []
        with pytest.raises(ChainHasNoRpc):
            async with unit_of_work(sessionmaker) as session:
                await service.update_chain(session, 31337, ChainUpdate(enabled=True), probe=probe)
