"""Schedules run by the real engine on a real anvil, on PostgreSQL and SQLite."""

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.infra.signing.keystore import MasterKey
from tests.support.engine import EngineHarness, open_engine_harness


@pytest.fixture
async def harness(
    sessionmaker: async_sessionmaker[AsyncSession], anvil_url: str, master_key: MasterKey
) -> AsyncIterator[EngineHarness]:
    async with open_engine_harness(sessionmaker, anvil_url, master_key) as value:
        yield value
