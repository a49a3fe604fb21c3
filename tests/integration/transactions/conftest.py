"""The engine harness every transaction test here runs on (both databases, a real anvil)."""

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.infra.anvil import run_anvil
from chainflow.infra.signing.keystore import MasterKey
from tests.support.engine import FAST_STUCK, EngineHarness, open_engine_harness


@pytest.fixture
async def harness(
    sessionmaker: async_sessionmaker[AsyncSession], anvil_url: str, master_key: MasterKey
) -> AsyncIterator[EngineHarness]:
    async with open_engine_harness(sessionmaker, anvil_url, master_key) as value:
        yield value


@pytest.fixture
async def fast_stuck_harness(
    sessionmaker: async_sessionmaker[AsyncSession], anvil_url: str, master_key: MasterKey
) -> AsyncIterator[EngineHarness]:
    """Stuck after 1 s (FAST_STUCK), for a test that waits for a bump while mining is
    stopped: no block comes, so only the time rule bumps."""
    async with open_engine_harness(sessionmaker, anvil_url, master_key, config=FAST_STUCK) as value:
        yield value


@pytest.fixture
async def own_anvil_url() -> AsyncIterator[str]:
    """An anvil for one test: base-fee spikes and reorgs must not reach the shared one."""
    async with run_anvil() as url:
        yield url
